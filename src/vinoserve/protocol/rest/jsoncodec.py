"""The JSON of the REST API: reading request bodies, writing tensor bodies and small documents.

Tensor bodies are large (a batch of 8 images is 1.2 M numbers): orjson parses them about 4x faster
than the standard library and writes numpy arrays directly, without ``tolist()``, about 25x faster.
Numpy arrays and scalars and ``bytes`` are accepted anywhere in a written value: ``bytes`` become
text when they are UTF-8, else ``{"b64": ...}`` as TF Serving writes binary strings. Every body read
is held to :data:`MAX_DEPTH` levels of nesting.

Status, metadata and error documents are small and hold no arrays; :func:`json_response` writes
them with the standard library, whose spacing (``{"error": "..."}``) they have always had.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import orjson
from aiohttp import web

MAX_DEPTH = 64  # arrays and objects nested deeper are refused (numpy's dimension limit too)
# every byte but the brackets and the quote, for bytes.translate to delete
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_SQUARE = bytes.maketrans(b"{}", b"[]")
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class JsonTooDeep(ValueError):
    """The JSON text nests arrays and objects deeper than :data:`MAX_DEPTH`."""


def check_depth(text: bytes, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonTooDeep` when the valid JSON ``text`` nests deeper than ``limit``.

    Reads the bytes with C-speed passes and no recursion, so the check itself cannot overflow a
    stack, and costs little for a large tensor body (its few brackets are all that is left after
    the first pass).
    """
    # Inside strings a backslash escapes the next byte: drop escaped backslashes first, then escaped
    # quotes, and every quote left opens or closes a string; the pieces between them alternate.
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = b"".join(text.translate(None, _NOT_STRUCTURE).split(b'"')[::2]).translate(_SQUARE)
    # Each pass deletes the innermost pairs, lowering the deepest nesting by exactly one.
    for _ in range(limit):
        if not structure:
            return
        structure = structure.replace(b"[]", b"")
    if structure:
        raise JsonTooDeep(f"JSON nests deeper than {limit} levels")


def loads(data: bytes | memoryview) -> Any:
    """Parse a JSON body; ``ValueError`` on bad JSON, bad UTF-8 or nesting deeper than 64."""
    value = orjson.loads(data)  # its own limit (1024 levels) keeps its parser's stack safe
    check_depth(data if isinstance(data, bytes) else bytes(data))
    return value


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, np.ndarray):
        return value.tolist()  # orjson gets here only for arrays it cannot write (strings, strided)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    """Write a JSON body; numpy arrays and bytes are accepted anywhere."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def json_response(body: Any, status: int = 200) -> web.Response:
    """A small JSON document (status, metadata, an error) as an ``application/json`` response."""
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
