"""Small models the tests build themselves (OpenVINO opset API and onnx.helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops


def _save(model: ov.Model, base: Path, version: int = 1, name: str = "model") -> Path:
    d = base / str(version)
    d.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(d / f"{name}.xml"), compress_to_fp16=False)
    return base


def _named(node: ov.Node, name: str) -> ov.Output:
    out = node.output(0)
    out.get_tensor().set_names({name})
    return out


def affine_model(
    shape: list[int] | None = None, scale: float = 2.0, bias: float = 1.0, dtype: type = np.float32
) -> ov.Model:
    """y = x * scale + bias, input ``b`` (default [1,10]), output ``y``."""
    shape = [1, 10] if shape is None else shape
    t = ov.Type.f32 if dtype == np.float32 else ov.Type(np.dtype(dtype))
    x = ops.parameter(shape, t, name="b")
    x.output(0).get_tensor().set_names({"b"})
    y = ops.add(ops.multiply(x, ops.constant(np.array(scale, dtype=dtype))), ops.constant(np.array(bias, dtype=dtype)))
    return ov.Model([_named(y, "y")], [x], "affine")


def write_affine(
    base: Path,
    version: int = 1,
    shape: list[int] | None = None,
    scale: float = 2.0,
    bias: float = 1.0,
    dtype: type = np.float32,
) -> Path:
    """An IR of :func:`affine_model` in ``base/version``."""
    return _save(affine_model(shape, scale, bias, dtype), base, version)


def write_two_inputs(base: Path, version: int = 1) -> Path:
    """IR with inputs ``a`` and ``b`` ([1,10] f32), outputs ``sum`` = a+b and ``diff`` = a-b."""
    a = ops.parameter([1, 10], ov.Type.f32, name="a")
    a.output(0).get_tensor().set_names({"a"})
    b = ops.parameter([1, 10], ov.Type.f32, name="b")
    b.output(0).get_tensor().set_names({"b"})
    model = ov.Model([_named(ops.add(a, b), "sum"), _named(ops.subtract(a, b), "diff")], [a, b], "two")
    return _save(model, base, version)


def write_rigid(base: Path, version: int = 1) -> Path:
    """IR [1,10] → reshape to a constant [1,2,5]: it cannot take any batch but 1."""
    x = ops.parameter([1, 10], ov.Type.f32, name="b")
    x.output(0).get_tensor().set_names({"b"})
    r = ops.reshape(x, ops.constant(np.array([1, 2, 5], dtype=np.int64)), special_zero=False)
    return _save(ov.Model([_named(r, "y")], [x], "rigid"), base, version)


def write_positional(base: Path, height: int, width: int, version: int = 1) -> Path:
    """An NCHW IR whose answer depends on every position: ``y = x * w`` with ``w`` all different.

    Input ``x`` [1,3,height,width] f32, output ``y`` of the same shape; ``w`` is :func:`positional_weights`.
    """
    x = ops.parameter([1, 3, height, width], ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    y = ops.multiply(x, ops.constant(positional_weights(height, width)))
    return _save(ov.Model([_named(y, "y")], [x], "positional"), base, version)


def positional_weights(height: int, width: int) -> np.ndarray:
    """[1,3,height,width] f32 of distinct values (1, 2, 3, ...), exact in f32."""
    return np.arange(1, 3 * height * width + 1, dtype=np.float32).reshape(1, 3, height, width)


def write_onnx_affine(base: Path, version: int = 1, batch: int | str = 1) -> Path:
    """ONNX model: y = x * 2 + 1 with input ``b`` [batch,10]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["b", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [batch, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        [
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    d = base / str(version)
    d.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(d / "model.onnx"))
    return base


def write_strings(base: Path, version: int = 1) -> Path:
    """IR that returns its STRING input ``s`` ([-1]) unchanged."""
    s = ops.parameter([-1], ov.Type.string, name="s")
    s.output(0).get_tensor().set_names({"s"})
    return _save(ov.Model([s.output(0)], [s], "echo"), base, version)


def write_bool(base: Path, version: int = 1) -> Path:
    """IR y = not b, with a BOOL input ``b`` [1,4]."""
    b = ops.parameter([1, 4], ov.Type.boolean, name="b")
    b.output(0).get_tensor().set_names({"b"})
    return _save(ov.Model([_named(ops.logical_not(b), "y")], [b], "not"), base, version)


def slow_model(size: int = 512, depth: int = 8, repeat: int = 8192) -> ov.Model:
    """``y = np.roll(x, depth, axis=1)``, computed slowly: ``repeat`` copies of the batch go through
    ``depth`` MatMuls with a cyclic permutation matrix, then a max over the (equal) copies.

    Input ``x`` [-1, size] f32, output ``y``. The work grows with the batch and ``repeat`` while the
    request stays small and the answer exact, so tests can keep requests in flight and check each one.
    """
    x = ops.parameter([-1, size], ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    copies = ops.tile(x, ops.constant(np.array([repeat, 1], np.int64)))
    h: ov.Node = ops.reshape(copies, ops.constant(np.array([repeat, -1, size], np.int64)), special_zero=False)
    shift = ops.constant(np.roll(np.eye(size, dtype=np.float32), 1, axis=1))  # column j+1 takes column j
    for _ in range(depth):  # one shared weight, so a deep model stays a small file
        h = ops.matmul(h, shift, False, False)
    y = ops.reduce_max(h, ops.constant(np.array([0], np.int64)), keep_dims=False)
    return ov.Model([_named(y, "y")], [x], "slow")


def write_slow(base: Path, version: int = 1, **kw: int) -> Path:
    """An IR of :func:`slow_model` in ``base/version``."""
    return _save(slow_model(**kw), base, version)


def write_slow_affine(
    base: Path, version: int = 1, rows_per_item: int = 32, size: int = 1024, depth: int = 32, width: int = 10
) -> Path:
    """y = b * 2 + 1 (input ``b`` [-1,width]) plus output ``work``: a chain of ``depth`` MatMuls.

    The chain runs on ``batch * rows_per_item`` rows of ``size`` columns, so the time an inference
    takes grows with the batch (a batch of 16 takes a fraction of a second on one core), not with
    ``width``.
    """
    rng = np.random.default_rng(0)
    x = ops.parameter([-1, width], ov.Type.f32, name="b")
    x.output(0).get_tensor().set_names({"b"})
    y = ops.add(ops.multiply(x, ops.constant(np.float32(2))), ops.constant(np.float32(1)))
    s = ops.reduce_sum(x, ops.constant(np.array([1], dtype=np.int64)), keep_dims=True)  # [B,1]
    t = ops.tile(s, ops.constant(np.array([rows_per_item, size], dtype=np.int64)))
    w = ops.constant((rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32))
    for _ in range(depth):
        t = ops.matmul(t, w, False, False)
    work = ops.reduce_mean(t, ops.constant(np.array([0, 1], dtype=np.int64)), keep_dims=True)
    return _save(ov.Model([_named(y, "y"), _named(work, "work")], [x], "slow"), base, version)


def quadrant_model(classes: int = 4) -> ov.Model:
    """Input ``image`` [1,3,8,8] f32 → ``probabilities`` [1,classes]: which 4x4 quadrant is brightest.

    Class 0 is top-left, 1 top-right, 2 bottom-left, 3 bottom-right. With 1001 classes (TF-slim
    style) index 0 is a background class in front and the unused classes follow.
    """
    x = ops.parameter([1, 3, 8, 8], ov.Type.f32, name="image")
    x.output(0).get_tensor().set_names({"image"})
    pooled = ops.avg_pool(x, [4, 4], [0, 0], [0, 0], [4, 4], exclude_pad=True)  # [N,3,2,2]
    summed = ops.reduce_sum(pooled, ops.constant(np.array([1], np.int64)), keep_dims=False)
    logits = ops.reshape(summed, ops.constant(np.array([0, 4], np.int64)), special_zero=True)
    if classes == 1001:
        logits = ops.pad(
            logits,
            ops.constant(np.array([0, 1], np.int64)),
            ops.constant(np.array([0, 996], np.int64)),
            "constant",
            ops.constant(np.float32(-1e4)),
        )
    probs = ops.softmax(logits, 1).output(0)
    probs.get_tensor().set_names({"probabilities"})
    return ov.Model([probs], [x], "quadrants")


def write_quadrants(base: Path, classes: int = 4, version: int = 1) -> Path:
    """An IR of :func:`quadrant_model` in ``base/version``."""
    return _save(quadrant_model(classes), base, version)


def write_picky(base: Path, version: int = 1) -> Path:
    """IR y = x * 2 + 1 (input ``x`` [-1,4]) that fails at inference when the largest value in the
    batch is not 4: the data picks the reshape target ``[-1, max(x)]``. A batch holding a row whose
    largest value is 5 fails as a whole, which is what a failing merged batch needs. The CPU plugin
    skips that check when the target equals the one of the inference before (so the same value twice
    in a row runs): give each failing batch its own value."""
    x = ops.parameter([-1, 4], ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    k = ops.convert(ops.reduce_max(x, ops.constant(np.array([0, 1], np.int64)), keep_dims=False), ov.Type.i64)
    shape = ops.concat([ops.constant(np.array([-1], np.int64)), ops.unsqueeze(k, ops.constant(np.int64(0)))], 0)
    r = ops.reshape(x, shape, special_zero=False)
    y = ops.add(ops.multiply(r, ops.constant(np.float32(2))), ops.constant(np.float32(1)))
    return _save(ov.Model([_named(y, "y")], [x], "picky"), base, version)
