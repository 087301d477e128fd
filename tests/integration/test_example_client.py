"""The example client (``vinoserve-grpc-client``) as a process against a real server, and its library.

The served model has answers known by construction: it splits an 8x8 image into four 4x4
quadrants and answers the brightest one (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right).
Every line the client prints is checked against the SPEC §8 format, and the statistics block is
recomputed from the per-iteration times it printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from models import write_affine
from openvino import opset13 as ops
from tls_certs import Certs, make_certs

from vinoserve.client import ClientError, TfsClient

F32 = '{"INFERENCE_PRECISION_HINT":"f32"}'
NAMES = ["top_left", "top_right", "bottom_left", "bottom_right"]
LABELS = [1, 3, 0, 2, 2, 0, 3, 1, 0, 3]
CLIENT = [sys.executable, "-m", "vinoserve.client.grpc_serving_client"]

NUM = r"(\d+\.\d\d|inf)"
ITERATION = re.compile(rf"Iteration (\d+); Processing time: (\d+\.\d\d) ms; speed {NUM} fps")
RESULT = re.compile(r"\t (\d+) (\S+) (-?\d+) (|; Correct match\.|; Incorrect match\. Should be (\d+) (\S+))")
STATS = [
    re.compile(rf"{t}: (\d+\.\d\d) ms; {s}: {NUM} fps")
    for t, s in [("average time", "average speed"), ("median time", "median speed"), ("max time", "min speed"),
                 ("min time", "max speed"), ("time percentile 90", "speed percentile 90"),
                 ("time percentile 50", "speed percentile 50")]
]


def quadrant_model(classes: int = 4) -> ov.Model:
    """Input ``image`` [1,3,8,8] f32 → ``probabilities`` [1,classes]; with 1001 classes, index 0 is background."""
    x = ops.parameter([1, 3, 8, 8], ov.Type.f32, name="image")
    x.output(0).get_tensor().set_names({"image"})
    pooled = ops.avg_pool(x, [4, 4], [0, 0], [0, 0], [4, 4], exclude_pad=True)  # [N,3,2,2]
    summed = ops.reduce_sum(pooled, ops.constant(np.array([1], np.int64)), keep_dims=False)
    logits = ops.reshape(summed, ops.constant(np.array([0, 4], np.int64)), special_zero=True)
    if classes == 1001:  # TF-slim style: a background class in front, unused classes behind
        logits = ops.pad(logits, ops.constant(np.array([0, 1], np.int64)), ops.constant(np.array([0, 996], np.int64)),
                         "constant", ops.constant(np.float32(-1e4)))
    probs = ops.softmax(logits, 1).output(0)
    probs.get_tensor().set_names({"probabilities"})
    return ov.Model([probs], [x], "quadrants")


def quadrant_images(labels: list[int], seed: int = 0) -> np.ndarray:
    """NCHW float32 in 0..1: dim noise everywhere, one bright quadrant per image."""
    rng = np.random.default_rng(seed)
    imgs = rng.uniform(0.0, 0.3, (len(labels), 3, 8, 8)).astype(np.float32)
    for i, k in enumerate(labels):
        r, c = divmod(k, 2)
        imgs[i, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = rng.uniform(0.7, 1.0, (3, 4, 4))
    return imgs


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """imgs.npy (10 images), lbs.npy, names.txt in a directory."""
    np.save(tmp_path / "imgs.npy", quadrant_images(LABELS))
    np.save(tmp_path / "lbs.npy", np.array(LABELS, dtype=np.int64))
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    return tmp_path


def serve_quadrants(serve, base: Path, classes: int = 4, extra: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Serve the quadrant model as ``quad`` with ``--batch_size auto`` (and ``extra`` flags)."""
    ov.save_model(quadrant_model(classes), str(base / "quad" / "1" / "model.xml"), compress_to_fp16=False)
    return serve(["--model_name", "quad", "--model_path", str(base / "quad"), "--batch_size", "auto",
                  "--plugin_config", F32, *(extra or [])])


@pytest.fixture
def quad(serve, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real server with the quadrant model."""
    return serve_quadrants(serve, tmp_path)


def run_client(port: int, data: Path, *extra: str, images: str = "imgs.npy") -> subprocess.CompletedProcess[str]:
    """The example client with the quadrant model's names; labels and names unless overridden."""
    args = ["--grpc_port", str(port), "--model_name", "quad", "--input_name", "image",
            "--output_name", "probabilities", "--transpose_input", "False",
            "--images_numpy_path", str(data / images), *extra]
    return subprocess.run([*CLIENT, *args], capture_output=True, text=True, timeout=120, check=False)


def check_output(text: str, batch: int, iterations: int, images: int, path: str, model: str = "quad"
                 ) -> list[tuple[int, str, int, str]]:
    """Assert the SPEC §8 format line by line; return (index, name, class, mark) of every result line."""
    lines = text.split("\n")
    assert lines.pop() == "", "output must end with a newline"
    assert lines[:7] == ["Image data range: 0.0 : 255.0", "Start processing:", f"\tModel name: {model}",
                         f"\tIterations: {iterations}", f"\tImages numpy path: {path}",
                         f"\tNumpy file shape: ({images}, 3, 8, 8)", ""]
    pos, results, times = 7, [], []
    for it in range(1, iterations + 1):
        m = ITERATION.fullmatch(lines[pos])
        assert m and int(m[1]) == it, lines[pos]
        times.append(int(float(m[2])))
        assert lines[pos + 1] == "imagenet top results in a single batch:"
        for i in range(batch):
            r = RESULT.fullmatch(lines[pos + 2 + i])
            assert r and int(r[1]) == i, repr(lines[pos + 2 + i])
            results.append((i, r[2], int(r[3]), r[4]))
        pos += 2 + batch
    assert lines[pos:pos + 2] == ["", "processing time for all iterations"]
    # A time printed as 2.00 may have been 1.998 (truncated to 1): allow 1 ms against the printed times.
    t = np.array(times)
    n = len(times)
    expected = [t.mean(), np.median(t), t.max(), t.min(), np.percentile(t, 90), np.percentile(t, 50)]
    printed = []
    for regex, line, value in zip(STATS, lines[pos + 2:pos + 8], expected, strict=True):
        m = regex.fullmatch(line)
        assert m, line
        ms = float(m[1])
        printed.append(ms)
        assert abs(ms - value) <= 1.0, (line, times)
        # the speed comes from the unrounded time
        assert m[2] == "inf" if ms == 0 else abs(1000 * batch / float(m[2]) - ms) <= 0.006, line
    mean, median, high, low = printed[:4]
    assert high == int(high) and low == int(low) and low <= median <= high and low <= mean <= high
    assert abs(mean * n - round(mean * n)) < 0.005 * n, "the mean of whole milliseconds"
    assert printed[5] == median and low <= printed[4] <= high
    std = re.fullmatch(r"time standard deviation: (\d+\.\d\d)", lines[pos + 8])
    var = re.fullmatch(r"time variance: (\d+\.\d\d)", lines[pos + 9])
    assert std and var, lines[pos + 8:pos + 10]
    assert abs(float(std[1]) ** 2 - float(var[1])) <= 0.01 * float(std[1]) + 0.0001
    rest = lines[pos + 10:]
    assert all(re.fullmatch(r"Classification accuracy: \d+\.\d\d", line) for line in rest) and len(rest) <= 1
    return results


def accuracy(text: str) -> str:
    return text.rstrip("\n").rsplit("\n", 1)[-1]


@pytest.mark.parametrize("batch, iterations", [(1, 10), (8, 1)])
def test_batches_classify_every_image(quad, data: Path, batch: int, iterations: int) -> None:  # type: ignore[no-untyped-def]
    """Batch 1 and batch 8 through --batch_size auto: every line in format, 100 % correct, names shown."""
    res = run_client(quad.grpc_port, data, "--batchsize", str(batch), "--labels_numpy_path", str(data / "lbs.npy"),
                     "--labels_names", str(data / "names.txt"))
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    results = check_output(res.stdout, batch, iterations, 10, str(data / "imgs.npy"))
    assert [c for _, _, c, _ in results] == LABELS[:batch * iterations]
    assert [n for _, n, _, _ in results] == [NAMES[k] for k in LABELS[:batch * iterations]]
    assert {mark for *_, mark in results} == {"; Correct match."}
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_incorrect_matches_name_the_expected_class(quad, data: Path) -> None:  # type: ignore[no-untyped-def]
    wrong = list(LABELS)
    wrong[2], wrong[5] = 3, 1
    np.save(data / "wrong.npy", np.array(wrong).reshape(-1, 1))  # the [n,1] layout is accepted too
    res = run_client(quad.grpc_port, data, "--labels_numpy_path", str(data / "wrong.npy"),
                     "--labels_names", str(data / "names.txt"))
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 1, 10, 10, str(data / "imgs.npy"))
    assert results[2] == (0, "top_left", 0, "; Incorrect match. Should be 3 bottom_right")
    assert results[5] == (0, "top_left", 0, "; Incorrect match. Should be 1 top_right")
    assert accuracy(res.stdout) == "Classification accuracy: 80.00"


def test_without_labels_or_names_prints_class_indices(quad, data: Path) -> None:  # type: ignore[no-untyped-def]
    res = run_client(quad.grpc_port, data, "--batchsize", "5")
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 5, 2, 10, str(data / "imgs.npy"))
    assert [(n, c, mark) for _, n, c, mark in results] == [(str(k), k, "") for k in LABELS]
    assert "Classification accuracy" not in res.stdout


@pytest.mark.parametrize("batch, images, iterations", [(4, 8, 2), (9, 16, 1)])
def test_batch_not_below_image_count_doubles_the_data(quad, data: Path, batch: int, images: int,
                                                      iterations: int) -> None:  # type: ignore[no-untyped-def]
    """4 images: batch 4 uses them twice (8), batch 9 four times (16); labels follow."""
    np.save(data / "four.npy", quadrant_images(LABELS[:4]))
    np.save(data / "four_lbs.npy", np.array(LABELS[:4]))
    res = run_client(quad.grpc_port, data, "--batchsize", str(batch), "--labels_numpy_path",
                     str(data / "four_lbs.npy"), images="four.npy")
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, batch, iterations, images, str(data / "four.npy"))
    assert [c for _, _, c, _ in results] == (LABELS[:4] * 4)[:batch * iterations]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_more_iterations_than_batches_go_round_again(quad, data: Path) -> None:  # type: ignore[no-untyped-def]
    res = run_client(quad.grpc_port, data, "--iterations", "13", "--batchsize", "3",
                     "--labels_numpy_path", str(data / "lbs.npy"))
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 3, 13, 10, str(data / "imgs.npy"))
    starts = [0, 3, 6] * 5  # three whole batches of 3 fit in 10 images
    assert [c for _, _, c, _ in results] == [LABELS[s + i] for s in starts[:13] for i in range(3)]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_nhwc_images_are_transposed_by_default(quad, data: Path) -> None:  # type: ignore[no-untyped-def]
    np.save(data / "nhwc.npy", quadrant_images(LABELS).transpose(0, 2, 3, 1) * 7.0 - 3.0)
    args = [*CLIENT, "--grpc_port", str(quad.grpc_port), "--model_name", "quad", "--input_name", "image",
            "--output_name", "probabilities", "--images_numpy_path", str(data / "nhwc.npy"),
            "--labels_numpy_path", str(data / "lbs.npy")]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    check_output(res.stdout, 1, 10, 10, str(data / "nhwc.npy"))
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_background_class_shifts_indices(serve, tmp_path: Path, data: Path) -> None:  # type: ignore[no-untyped-def]
    """With 1001 outputs, index 0 is background: printed classes are argmax - 1."""
    server = serve_quadrants(serve, tmp_path / "m1001", classes=1001)
    res = run_client(server.grpc_port, data, "--batchsize", "8", "--labels_numpy_path", str(data / "lbs.npy"),
                     "--labels_names", str(data / "names.txt"))
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 8, 1, 10, str(data / "imgs.npy"))
    assert [c for _, _, c, _ in results] == LABELS[:8]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_wrong_output_name_lists_outputs_and_exits_1(quad, data: Path) -> None:  # type: ignore[no-untyped-def]
    res = run_client(quad.grpc_port, data, "--output_name", "logits")
    assert res.returncode == 1
    assert "'logits'" in res.stderr and "available outputs" in res.stderr
    assert res.stderr.splitlines()[-1] == "\tprobabilities"
    assert "Iteration 1" not in res.stdout and "Traceback" not in res.stderr


@pytest.mark.parametrize("extra, text", [
    (["--model_name", "nope"], "NOT_FOUND: Model with requested name is not found"),
    (["--model_version", "2"], "NOT_FOUND: Model with requested version is not found"),
    (["--input_name", "x"], "INVALID_ARGUMENT"),
    (["--labels_numpy_path", "/nonexistent.npy"], "cannot load the labels /nonexistent.npy"),
    (["--tls", "--client_cert", "c.pem"], "a client certificate and a client key go together"),
])
def test_failures_are_one_line(quad, data: Path, extra: list[str], text: str) -> None:  # type: ignore[no-untyped-def]
    res = run_client(quad.grpc_port, data, *extra)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and lines[0].startswith("vinoserve-grpc-client: error:"), res.stderr


def test_unreachable_server_is_one_line(data: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run_client(port, data)
    assert res.returncode == 1 and "UNAVAILABLE" in res.stderr and "Traceback" not in res.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "vinoserve-grpc-client"
    if not script.exists():
        pytest.skip("package not installed into this environment's bin directory")
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0
    for flag in ["--grpc_address", "--grpc_port", "--images_numpy_path", "--labels_numpy_path", "--input_name",
                 "--output_name", "--model_name", "--model_version", "--transpose_input", "--transpose_method",
                 "--iterations", "--batchsize", "--tls", "--server_cert", "--client_cert", "--client_key"]:
        assert flag in res.stdout


# --- the library -------------------------------------------------------------------------------


def test_library_predict_metadata_status(quad) -> None:  # type: ignore[no-untyped-def]
    imgs = quadrant_images(LABELS) * 255
    with TfsClient(quad.grpc_address) as client:
        assert client.wait_available("quad", timeout=30).state == "AVAILABLE"
        [status] = client.status("quad")
        assert (status.version, status.state, status.error_code) == (1, "AVAILABLE", 0)
        out = client.predict("quad", {"image": imgs[:8]}, version=1)
        assert list(out) == ["probabilities"] and out["probabilities"].shape == (8, 4)
        assert out["probabilities"].argmax(1).tolist() == LABELS[:8]
        meta = client.metadata("quad")
        assert meta.version == 1 and meta.labels == ()
        assert meta.inputs["image"].dtype == "DT_FLOAT" and meta.inputs["image"].shape == (8, 3, 8, 8)
        assert meta.outputs["probabilities"].shape == (8, 4)
        with pytest.raises(ClientError) as err:
            client.status("nope")
        assert str(err.value) == "NOT_FOUND: Model with requested name is not found"


def test_library_sends_messages_above_grpc_default_limit(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A batch of 8 images of 3x224x224 float32 (4.8 MB each way) is more than gRPC's 4 MB default."""
    server = serve(["--model_name", "aff", "--model_path", str(write_affine(tmp_path / "aff", shape=[8, 3, 224, 224])),
                    "--plugin_config", F32])
    x = np.random.default_rng(0).random((8, 3, 224, 224), dtype=np.float32)
    with TfsClient(server.grpc_address) as client:
        y = client.predict("aff", {"b": x})["y"]
    np.testing.assert_allclose(y, x * 2 + 1, rtol=1e-6)


# --- TLS against the real server -----------------------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    """A CA with a server and a client certificate, and a client certificate from another CA."""
    return make_certs(tmp_path / "certs")


def serve_tls(serve, tmp_path: Path, certs: Certs, mutual: bool):  # type: ignore[no-untyped-def]
    """The quadrant model over TLS; with ``mutual``, client certificates signed by ``certs.ca`` are required."""
    tls = ["--tls_cert", str(certs.server), "--tls_key", str(certs.server_key)]
    return serve_quadrants(serve, tmp_path, extra=[*tls, "--tls_client_ca", str(certs.ca)] if mutual else tls)


def test_tls_with_server_certificate(serve, tmp_path: Path, certs: Certs, data: Path) -> None:  # type: ignore[no-untyped-def]
    """--tls --server_cert (the CA that signed the server's certificate): 100 %, names from --labels_names."""
    server = serve_tls(serve, tmp_path, certs, mutual=False)
    res = run_client(server.grpc_port, data, "--tls", "--server_cert", str(certs.ca), "--batchsize", "8",
                     "--labels_numpy_path", str(data / "lbs.npy"), "--labels_names", str(data / "names.txt"))
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 8, 1, 10, str(data / "imgs.npy"))
    assert [n for _, n, _, _ in results] == [NAMES[k] for k in LABELS[:8]]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_mutual_tls(serve, tmp_path: Path, certs: Certs, data: Path) -> None:  # type: ignore[no-untyped-def]
    """A server that demands a client certificate takes ours and refuses a client without one or with an
    untrusted one, and keeps serving."""
    server = serve_tls(serve, tmp_path, certs, mutual=True)
    trusted = ["--tls", "--server_cert", str(certs.ca), "--client_cert", str(certs.client),
               "--client_key", str(certs.client_key), "--labels_numpy_path", str(data / "lbs.npy")]
    refused = [run_client(server.grpc_port, data, "--tls", "--server_cert", str(certs.ca)),
               run_client(server.grpc_port, data, "--tls", "--server_cert", str(certs.ca),
                          "--client_cert", str(certs.rogue), "--client_key", str(certs.rogue_key))]
    for res in refused:
        assert res.returncode == 1 and "UNAVAILABLE" in res.stderr and "Traceback" not in res.stderr
    ok = run_client(server.grpc_port, data, *trusted)
    assert ok.returncode == 0, ok.stderr
    assert accuracy(ok.stdout) == "Classification accuracy: 100.00"


@pytest.mark.parametrize("untrusted", [True, False])
def test_untrusted_or_plain_client_is_refused(serve, tmp_path: Path, certs: Certs, data: Path,  # type: ignore[no-untyped-def]
                                              untrusted: bool) -> None:
    """A server certificate the client does not trust, or no TLS at all, fails on one line."""
    server = serve_tls(serve, tmp_path, certs, mutual=False)
    res = run_client(server.grpc_port, data, *(["--tls", "--server_cert", str(certs.rogue_ca)] if untrusted else []))
    assert res.returncode == 1 and "UNAVAILABLE" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
