"""KServe v2 inference with the stock tritonclient clients: the dtypes of the affine models the tests
serve, their KServe datatype names, and an infer call from numpy arrays over either protocol."""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.http as thttp

DTYPES = {"aff": np.float32, "i32": np.int32, "i64": np.int64, "u8": np.uint8, "f16": np.float16}
KSERVE = {np.float32: "FP32", np.int32: "INT32", np.int64: "INT64", np.uint8: "UINT8", np.float16: "FP16"}


def infer(
    client: Any,
    mod: Any,
    model: str,
    arrays: dict[str, np.ndarray],
    binary: bool = True,
    outputs: list[str] | None = None,
    **kw: Any,
) -> Any:
    """``client.infer`` on ``model`` with ``arrays`` as inputs (binary or JSON over HTTP) and ``outputs``
    requested by name; ``mod`` is the client's tritonclient module."""
    inputs = []
    for name, a in arrays.items():
        dt = "BYTES" if a.dtype == object else KSERVE.get(a.dtype.type, "BOOL")
        i = mod.InferInput(name, list(a.shape), dt)
        if mod is thttp:
            i.set_data_from_numpy(a, binary_data=binary)
        else:
            i.set_data_from_numpy(a)
        inputs.append(i)
    req_out = None
    if outputs is not None:
        req_out = [
            mod.InferRequestedOutput(o, binary_data=binary) if mod is thttp else mod.InferRequestedOutput(o)
            for o in outputs
        ]
    return client.infer(model, inputs, outputs=req_out, **kw)
