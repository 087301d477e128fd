"""TF Serving REST requests with plain HTTP: a predict call on the affine model's row X (y = 2X + 1 is Y)
and the JSON of a 200 answer."""

from __future__ import annotations

import json
from typing import Any

import requests

from .server import RunningServer

X = list(range(10))
Y = [2 * v + 1 for v in X]


def predict(server: RunningServer, body: Any, model: str = "aff", version: int | None = None) -> requests.Response:
    """POST ``body`` (JSON, or bytes as they are) to the predict route of ``model`` (and ``version``)."""
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "") + ":predict"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.rest_url + path, data=data, timeout=30)


def ok_json(r: requests.Response) -> Any:
    """The JSON of ``r``, which must be a 200."""
    assert r.status_code == 200, r.text
    return r.json()
