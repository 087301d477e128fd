"""Example client: classify a numpy file of images over TF Serving gRPC and report speed and accuracy.

A drop-in for OVMS's ``grpc_serving_client.py`` (same flags, defaults and output, SPEC §8) that
needs no TensorFlow. Installed as ``vinoserve-grpc-client``; also ``python -m
vinoserve.client.grpc_serving_client``. What it does, in the order the original does it:

1. loads the images and rescales the whole array to 0..255 (``(x - min) / ptp * 255``);
2. doubles the images (and labels) while the batch size is not smaller than their number;
3. sends ``--iterations`` requests of ``--batchsize`` consecutive images (0: every batch once,
   more: round again), timing each Predict call;
4. prints the top class of every image, then statistics over the per-request times truncated
   to whole milliseconds, then the accuracy when labels were given.

Class names come from ``--labels_names`` (one per line), else from the model's metadata when the
server sends them, else the class index is printed. Decisions of our own: images are always sent
as float32 (the original sent float64 for integer input, which no image model accepts), and
failures end with one line on stderr and exit code 1 instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

# gRPC's core logs every failed TLS handshake at info level, which would add lines to the one-line
# error; it reads this when gRPC is imported, hence before the imports below.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from vinoserve.client.stats import print_statistics, rescale_to_255  # noqa: E402
from vinoserve.client.tfs import ClientError, ClientTlsFiles, TfsClient, predict_request  # noqa: E402
from vinoserve.errors import VinoserveError  # noqa: E402
from vinoserve.protocol.tfs_tensors import tensor_to_array  # noqa: E402

PROG = "vinoserve-grpc-client"
# A 1001-class output has a background class at index 0 (TF-slim ImageNet models): shift by one.
BACKGROUND_CLASSES = 1001


class UsageError(Exception):
    """A problem with the inputs, reported on one line."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags of SPEC §8, with OVMS's defaults."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Classify images from a numpy file through the TF Serving gRPC Predict call and "
        "report per-request latency, throughput and (with labels) accuracy.",
    )
    a = p.add_argument
    a("--images_numpy_path", required=True, help="images as a numpy array [n,c,h,w] or [n,h,w,c]")
    a("--labels_numpy_path", help="expected class per image, numpy [n] or [n,1]; enables the accuracy")
    a("--labels_names", help="text file of class names, one per line in class order")
    a("--grpc_address", default="localhost", help="server host (default: localhost)")
    a("--grpc_port", type=int, default=9000, help="server gRPC port (default: 9000)")
    a("--input_name", default="input", help="model input to feed (default: input)")
    a(
        "--output_name",
        default="resnet_v1_50/predictions/Reshape_1",
        help="model output holding the class scores (default: resnet_v1_50/predictions/Reshape_1)",
    )
    a("--model_name", default="resnet", help="served model name (default: resnet)")
    a("--model_version", type=int, default=0, help="model version; 0 = the server's default (latest)")
    a(
        "--transpose_input",
        choices=["False", "True"],
        default="True",
        help="transpose the images before sending (default: True)",
    )
    a(
        "--transpose_method",
        choices=["nchw2nhwc", "nhwc2nchw"],
        default="nhwc2nchw",
        help="which transpose --transpose_input True applies (default: nhwc2nchw)",
    )
    a("--iterations", type=int, default=0, help="number of requests; 0 = every batch once (default: 0)")
    a("--batchsize", type=int, default=1, help="images per request (default: 1)")
    a("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default: 10)")
    a("--tls", action="store_true", help="connect over TLS")
    a("--server_cert", help="PEM certificate (or CA) the server's certificate is checked against")
    a("--client_cert", help="PEM client certificate for mutual TLS (with --client_key)")
    a("--client_key", help="PEM private key of --client_cert")
    args = p.parse_args(argv)
    if args.batchsize < 1:
        p.error("--batchsize must be at least 1")
    if args.iterations < 0:
        p.error("--iterations must be 0 (every batch once) or more")
    return args


def _load(path: str, what: str) -> np.ndarray:
    try:
        array: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        return array
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the {what} {path}: {exc}") from exc


def load_names(path: str) -> list[str]:
    """Class names from a text file, one per line (trailing blank lines dropped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the class names {path}: {exc.strerror or exc}") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def class_name(names: Sequence[str], index: int) -> str:
    """The name of class ``index``, or the index itself when no name is known."""
    return names[index] if 0 <= index < len(names) else str(index)


def model_names(client: TfsClient, args: argparse.Namespace) -> list[str]:
    """Class names the server publishes in the model's metadata; none if it does not (or fails)."""
    try:
        return list(client.metadata(args.model_name, args.model_version or None, timeout=args.timeout).labels)
    except ClientError:
        return []  # the Predict call that follows reports an unreachable server or unknown model


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address
    return f"{host}:{port}"


def _tls(args: argparse.Namespace) -> ClientTlsFiles | None:
    files = [args.server_cert, args.client_cert, args.client_key]
    if not args.tls:
        if any(files):
            print(f"{PROG}: note: certificate flags are used only with --tls; connecting without TLS", file=sys.stderr)
        return None
    server_cert, client_cert, client_key = (Path(f) if f else None for f in files)
    return ClientTlsFiles(server_cert, client_cert, client_key)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Everything after flag parsing; returns the exit code. Raises UsageError or ClientError."""
    imgs = rescale_to_255(_load(args.images_numpy_path, "images"))
    if imgs.ndim < 1 or len(imgs) == 0:
        raise UsageError(f"{args.images_numpy_path} holds no images (shape {imgs.shape})")
    print("Image data range:", imgs.min(), ":", imgs.max(), file=out)
    lbs: np.ndarray | None = None
    if args.labels_numpy_path is not None:
        lbs = np.asarray(_load(args.labels_numpy_path, "labels")).reshape(-1)
        if len(lbs) != len(imgs):
            raise UsageError(f"{args.labels_numpy_path} has {len(lbs)} labels for {len(imgs)} images")
    batch = args.batchsize
    while batch >= len(imgs):  # too few images for one request: use the set twice (and again)
        imgs = np.concatenate([imgs, imgs])
        lbs = None if lbs is None else np.concatenate([lbs, lbs])
    iterations = args.iterations or len(imgs) // batch

    print("Start processing:", file=out)
    print(f"\tModel name: {args.model_name}", file=out)
    print(f"\tIterations: {iterations}", file=out)
    print(f"\tImages numpy path: {args.images_numpy_path}", file=out)
    if args.transpose_input == "True":
        if imgs.ndim != 4:
            raise UsageError(f"--transpose_input True needs 4-D images, got shape {imgs.shape}")
        imgs = imgs.transpose((0, 3, 1, 2) if args.transpose_method == "nhwc2nchw" else (0, 2, 3, 1))
    print(f"\tNumpy file shape: {imgs.shape}\n", file=out)

    client = TfsClient(_address(args.grpc_address, args.grpc_port), tls=_tls(args), timeout=args.timeout)
    with client:
        names = load_names(args.labels_names) if args.labels_names else model_names(client, args)
        starts = range(0, len(imgs) - batch + 1, batch)
        times_ms: list[int] = []
        matched = total = 0
        for iteration in range(1, iterations + 1):
            x = starts[(iteration - 1) % len(starts)]
            request = predict_request(args.model_name, {args.input_name: imgs[x : x + batch]}, args.model_version)
            started = time.perf_counter()
            response = client.predict_raw(request)
            duration = (time.perf_counter() - started) * 1000
            if args.output_name not in response.outputs:
                print(
                    f"{PROG}: the response has no output named {args.output_name!r}; available outputs:",
                    file=sys.stderr,
                )
                for name in sorted(response.outputs):
                    print(f"\t{name}", file=sys.stderr)
                return 1
            times_ms.append(int(duration))  # statistics use whole milliseconds, as the original does
            scores = tensor_to_array(response.outputs[args.output_name], args.output_name)
            print(
                f"Iteration {iteration}; Processing time: {duration:.2f} ms; speed {1000 * batch / duration:.2f} fps",
                file=out,
            )
            print("imagenet top results in a single batch:", file=out)
            offset = 1 if scores.ndim > 1 and scores.shape[1] == BACKGROUND_CLASSES else 0
            for i in range(scores.shape[0]):
                top = int(np.argmax(scores[i])) - offset
                mark = ""
                if lbs is not None:
                    expected = int(lbs[x + i])
                    total += 1
                    if top == expected:
                        matched += 1
                        mark = "; Correct match."
                    else:
                        mark = f"; Incorrect match. Should be {expected} {class_name(names, expected)}"
                print(f"\t {i} {class_name(names, top)} {top} {mark}", file=out)
    print_statistics(times_ms, batch, out)
    if lbs is not None and total:
        print(f"Classification accuracy: {100 * matched / total:.2f}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        return run(args, sys.stdout)
    except (UsageError, ClientError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
    except VinoserveError as err:  # an answer whose tensor cannot be decoded
        print(f"{PROG}: error: cannot decode the answer: {err.text}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
