#!/usr/bin/env python3
"""``make demo``: the seed scenario end to end with a real pretrained classifier.

1. prepares the model repository and test images (``examples/prepare_demo.py --out demo``);
2. starts ``vinoserve --model_name resnet --model_path demo/models/resnet --batch_size auto
   --port 9000`` in its own process group (log in ``demo/server.log``) and waits until the model
   is AVAILABLE;
3. runs the example client with ``--batchsize 1`` into ``demo/b1.txt`` and prints it;
4. runs it with ``--batchsize 8`` into ``demo/b8.txt`` (the server reshapes the model to batch 8
   on the fly) and prints it;
5. stops the server (SIGTERM, then SIGKILL of the group if it does not exit).

Exit code 0 only if both runs report ``Classification accuracy: 100.00``. Each step says what it
does; a failing step says which and why in one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREPARE = ROOT / "examples" / "prepare_demo.py"
MODEL = "resnet"
EXPECTED = "Classification accuracy: 100.00"
LOAD_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0
STEPS = 5


class StepFailed(Exception):
    """A step failed; the message is the one-line reason."""


def say(msg: str) -> None:
    """One progress line, flushed so ``make`` shows it at once."""
    print(msg, flush=True)


def header(step: int, title: str) -> None:
    """The heading of a step."""
    say(f"==> [{step}/{STEPS}] {title}")


def rel(path: Path) -> str:
    """``path`` relative to the working directory when inside it (shorter commands and output)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def tool(name: str, module: str) -> list[str]:
    """The installed console script next to this Python, else ``python -m module``."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def shown(cmd: Sequence[str]) -> str:
    """A command as the user would type it (console scripts by name)."""
    first = Path(cmd[0]).name if Path(cmd[0]).parent == Path(sys.executable).parent else cmd[0]
    if cmd[0] == sys.executable:
        first = "python"
    return " ".join([first, *cmd[1:]])


def prepare(out: Path) -> None:
    """Step 1: run prepare_demo.py, its output indented; its one-line failure reason becomes ours."""
    cmd = [sys.executable, str(PREPARE), "--out", rel(out)]
    say(f"$ python {rel(PREPARE)} --out {rel(out)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:  # its own numbered steps, nested under ours
        say(f"    {line.rstrip()}")
    errors = [ln for ln in proc.stderr.read().splitlines() if ln.strip()]
    if proc.wait() != 0:
        reason = errors[-1].removeprefix("prepare_demo: ") if errors else f"exit code {proc.returncode}"
        raise StepFailed(reason)


def port_taken(port: int) -> bool:
    """Whether anything listens on (or holds) ``port`` locally."""
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                if s.connect_ex((host, port)) == 0:
                    return True
        except OSError:
            pass  # no IPv6 here
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: a port left in TIME_WAIT by an earlier run is free; a listening one is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def last_line(log: Path) -> str:
    """The last non-empty line of the server log (why it stopped), or a placeholder."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else "no output"


def start_server(out: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Step 2: refuse a busy port, start the server in its own process group, wait for AVAILABLE."""
    if port_taken(port):
        raise StepFailed(f"port {port} is already in use; stop whatever listens there and run the demo again")
    cmd = [
        *tool("vinoserve", "vinoserve"),
        "--model_name",
        MODEL,
        "--model_path",
        rel(out / "models" / MODEL),
        "--batch_size",
        "auto",
        "--port",
        str(port),
    ]
    say(f"$ {shown(cmd)} &   # log: {rel(log)}")
    with log.open("wb") as fh:
        server = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_available(server, port, log)
    except BaseException:
        stop_server(server)
        raise
    return server


def wait_available(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Poll GetModelStatus until the model is AVAILABLE; fail early if the server exits."""
    from vinoserve.client import ClientError, TfsClient

    started = time.monotonic()
    deadline = started + LOAD_TIMEOUT_S
    # Short reconnect backoff: gRPC's default grows to minutes while the server is not up yet.
    backoff = [
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    with TfsClient(f"localhost:{port}", timeout=2.0, options=backoff) as client:
        while True:
            if server.poll() is not None:
                raise StepFailed(f"the server exited with code {server.returncode}: {last_line(log)}")
            try:
                status = client.wait_available(MODEL, timeout=min(1.0, max(deadline - time.monotonic(), 0.0)))
            except ClientError as err:
                if "failed to load" in str(err):
                    raise StepFailed(str(err)) from None
                if time.monotonic() >= deadline:
                    raise StepFailed(f"model {MODEL} not AVAILABLE after {LOAD_TIMEOUT_S:g} s ({err})") from None
                continue
            say(
                f"  model {MODEL} version {status.version} is {status.state} "
                f"after {time.monotonic() - started:.1f} s (server pid {server.pid})"
            )
            return


def run_client(out: Path, port: int, batch: int) -> str:
    """Steps 3 and 4: one client run into ``b<batch>.txt``; returns its output."""
    result = out / f"b{batch}.txt"
    cmd = [
        *tool("vinoserve-grpc-client", "vinoserve.client.grpc_serving_client"),
        "--grpc_port",
        str(port),
        "--model_name",
        MODEL,
        "--input_name",
        "image",
        "--output_name",
        "probabilities",
        "--transpose_input",
        "False",
        "--images_numpy_path",
        rel(out / "imgs.npy"),
        "--labels_numpy_path",
        rel(out / "lbs.npy"),
        "--labels_names",
        rel(out / "names.txt"),
        "--batchsize",
        str(batch),
    ]
    say(f"$ {shown(cmd)} > {rel(result)}")
    with result.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise StepFailed(lines[-1] if lines else f"the client exited with code {proc.returncode}")
    text = result.read_text()
    say(f"$ cat {rel(result)}")
    print(text, end="", flush=True)
    return text


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, wait, then SIGKILL it if it is still there."""
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        say(f"  the server did not stop within {STOP_GRACE_S:g} s; killing it")
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        server.wait()


def reshapes(log: Path) -> list[str]:
    """The server's log lines about finished reshapes, without the timestamp prefix."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln.rsplit("] ", 1)[-1] for ln in lines if "Reshaped model" in ln]


def accuracy_line(text: str) -> str:
    """The client's accuracy line, or a note that it is missing."""
    lines = [ln for ln in text.splitlines() if ln.startswith("Classification accuracy:")]
    return lines[-1] if lines else "no accuracy line"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the steps; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("demo"), help="demo directory (default: demo)")
    parser.add_argument("--port", type=int, default=9000, help="gRPC port of the server (default: 9000)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    out: Path = args.out.resolve()
    step, title = 0, ""
    server: subprocess.Popen[bytes] | None = None
    outputs: dict[int, str] = {}
    try:
        step, title = 1, "prepare the model and the images"
        header(step, title)
        prepare(out)
        step, title = 2, f"start vinoserve with --batch_size auto on port {args.port}"
        header(step, title)
        server = start_server(out, args.port, out / "server.log")
        for batch in (1, 8):
            step, title = step + 1, f"classify the images with batch size {batch}"
            header(step, title)
            outputs[batch] = run_client(out, args.port, batch)
        step, title = 5, "stop the server"
        header(step, title)
        stop_server(server)
        say(f"  stopped (exit code {server.returncode}); what the server did with --batch_size auto:")
        for line in reshapes(out / "server.log"):
            say(f"    {line}")
    except StepFailed as exc:
        reason = " ".join(str(exc).split())  # a multi-line server error still makes one line
        print(f"demo: step {step}/{STEPS} ({title}) failed: {reason}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # anything else is still one line naming the step, by design
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"demo: step {step}/{STEPS} ({title}) failed: {type(exc).__name__}: {text}", file=sys.stderr, flush=True)
        return 1
    finally:
        if server is not None:
            stop_server(server)
    results = {batch: accuracy_line(text) for batch, text in outputs.items()}
    bad = [f"b{batch}.txt reports {line!r}" for batch, line in results.items() if line != EXPECTED]
    if bad:
        print(f"demo: failed: {'; '.join(bad)}, expected {EXPECTED!r}", file=sys.stderr, flush=True)
        return 1
    say(f"demo passed: batch 1 and batch 8 both report {EXPECTED} (results in {rel(out)}/b1.txt and b8.txt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
