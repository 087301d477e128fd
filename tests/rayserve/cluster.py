"""A two-node Ray cluster serving vinoserve, driven with stock clients, then taken down.

Executed as root inside ``unshare --net --pid --fork --mount-proc`` (loopback only, its own process
tree), not imported by pytest: ``python -m tests.rayserve.cluster SPEC.json`` from the repository root.
The Serve config is deploy/ray/serve.yaml with the test's model, flags and fixed replicas, started with
the documented ``serve run``. Results go to the spec's ``result`` file as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .calls import EXPECTED, INPUT, MODEL, OUTPUT, X, errors, infer_all, serving_nodes

HEAD_HTTP, HEAD_GRPC, WORKER_HTTP, WORKER_GRPC = 8000, 9000, 8001, 9001
_NODE: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "include_dashboard": False}


def _serve_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The documented config with the test's model and two fixed replicas, one per node."""
    config: dict[str, Any] = yaml.safe_load(Path(spec["config"]).read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": HEAD_HTTP}
    config["grpc_options"]["port"] = HEAD_GRPC
    (app,) = config["applications"]
    app["args"]["flags"] = spec["flags"]
    (dep,) = app["deployments"]
    del dep["autoscaling_config"]
    dep.update(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 1})
    return config


def _listening() -> bool:
    """Whether both nodes' proxies accept connections on their HTTP and gRPC ports."""
    for port in (HEAD_HTTP, HEAD_GRPC, WORKER_HTTP, WORKER_GRPC):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except OSError:
            return False
    return True


def _wait_running(serve: Any, replicas: int, timeout: float, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Until the application runs ``replicas`` replicas none of which is in ``exclude``; their actor names."""
    import ray

    deadline = time.monotonic() + timeout
    while True:
        names = sorted(
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::")
        )
        status = serve.status()
        app = status.applications.get("vinoserve")
        proxies = sorted(status.proxies.values())
        if app is not None and app.status == "RUNNING" and proxies == ["HEALTHY", "HEALTHY"] and _listening():
            states = app.deployments["vinoserve"].replica_states
            if states == {"RUNNING": replicas} and len(names) == replicas and not exclude & set(names):
                return names
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve did not reach {replicas} running replicas and 2 proxies: {status}, {names}")
        time.sleep(0.5)


class Traffic(threading.Thread):
    """Sends one request after another; a failed one is retried until it succeeds (or 60 s pass)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.stop = threading.Event()
        self.done = 0
        self.retried: list[str] = []
        self.failed: list[str] = []
        self.wrong = 0

    def run(self) -> None:
        while not self.stop.is_set():
            deadline = time.monotonic() + 60
            while True:
                try:
                    result = self.call()
                    break
                except Exception as exc:  # a request lost with the killed replica: retried
                    if time.monotonic() > deadline:
                        self.failed.append(repr(exc)[:300])
                        result = None
                        break
                    self.retried.append(repr(exc)[:300])
                    time.sleep(0.2)
            self.done += 1
            self.wrong += int(result is not None and np.asarray(result).tolist() != EXPECTED)


def _traffic_calls() -> list[Callable[[], Any]]:
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    grpc_client = tgrpc.InferenceServerClient(f"127.0.0.1:{HEAD_GRPC}")
    http_client = thttp.InferenceServerClient(f"127.0.0.1:{WORKER_HTTP}", network_timeout=60)

    def over_grpc() -> Any:
        inp = tgrpc.InferInput(INPUT, list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        return grpc_client.infer(MODEL, [inp], client_timeout=60).as_numpy(OUTPUT)

    def over_http() -> Any:
        inp = thttp.InferInput(INPUT, list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=True)
        return http_client.infer(MODEL, [inp]).as_numpy(OUTPUT)

    return [over_grpc, over_http]


def kill_mid_traffic(serve: Any, replicas: list[str]) -> dict[str, Any]:
    """Kill one replica while two clients send requests; wait for its replacement; stop the clients."""
    import ray

    traffic = [Traffic(c) for c in _traffic_calls()]
    for t in traffic:
        t.start()
    while min(t.done for t in traffic) < 5:
        time.sleep(0.1)
    victim = replicas[-1]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    killed_at = sum(t.done for t in traffic)
    after = _wait_running(serve, len(replicas), 120, exclude=frozenset({victim}))
    replaced_at = sum(t.done for t in traffic)
    while sum(t.done for t in traffic) < replaced_at + 10:
        time.sleep(0.1)
    for t in traffic:
        t.stop.set()
    for t in traffic:
        t.join(120)
    return {
        "victim": victim,
        "replicas_after": after,
        "requests": sum(t.done for t in traffic),
        "killed_at": killed_at,
        "replaced_at": replaced_at,
        "wrong": sum(t.wrong for t in traffic),
        "retried": [r for t in traffic for r in t.retried],
        "failed": [f for t in traffic for f in t.failed],
    }


def _other_processes() -> list[str]:
    """Command lines of the processes left in this namespace, zombies reaped (this process is its init)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            os.waitpid(int(entry.name), os.WNOHANG)
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            left.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200])
        except (OSError, ChildProcessError, IndexError):
            continue
    return left


def _wait_no_processes(timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := _other_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def main(spec_path: str) -> int:
    """Start the cluster and Serve, run the checks, take everything down; always writes a result."""
    spec = json.loads(Path(spec_path).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    # Everything Ray writes goes under RAY_TMPDIR (sessions, sockets, logs, the cluster address file).
    # The worker node's proxies bind their own ports (both nodes share 127.0.0.1); the head keeps the config's.
    os.environ.update(
        RAY_SERVE_WORKER_PROXY_HTTP_PORT=str(WORKER_HTTP),
        RAY_SERVE_WORKER_PROXY_GRPC_PORT=str(WORKER_GRPC),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TMPDIR=spec["temp_dir"],
    )
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    result: dict[str, Any] = {}
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    cluster = Cluster()
    try:
        head = cluster.add_node(**_NODE, node_ip_address="127.0.0.1")
        worker = cluster.add_node(**_NODE, node_ip_address="127.0.0.1")
        result["nodes"] = {"head": head.node_id, "worker": worker.node_id}
        timings["cluster"] = time.monotonic() - t0
        config = Path(spec["temp_dir"]) / "serve.yaml"
        config.write_text(yaml.safe_dump(_serve_config(spec)))
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "serve"),
                "run",
                "--non-blocking",
                "--address",
                cluster.address,
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        result["serve_run"] = [run.returncode, run.stdout[-2000:] + run.stderr[-2000:]]
        ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
        replicas = _wait_running(serve, 2, 180)
        timings["serve"] = time.monotonic() - t0
        result["head"] = infer_all(HEAD_HTTP, HEAD_GRPC)
        result["worker"] = infer_all(WORKER_HTTP, WORKER_GRPC)
        result["served_by"] = {
            "head": serving_nodes(HEAD_HTTP, HEAD_GRPC, 3),
            "worker": serving_nodes(WORKER_HTTP, WORKER_GRPC, 3),
        }
        result["errors"] = errors(HEAD_HTTP, HEAD_GRPC, spec["limit_bytes"])
        timings["clients"] = time.monotonic() - t0
        result["kill"] = kill_mid_traffic(serve, replicas)
        result["served_by_after_kill"] = {
            "head": serving_nodes(HEAD_HTTP, HEAD_GRPC, 2),
            "worker": serving_nodes(WORKER_HTTP, WORKER_GRPC, 2),
        }
        timings["kill"] = time.monotonic() - t0
    except Exception as exc:
        result["error"] = "".join(traceback.format_exception(exc))
    finally:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        except Exception as exc:
            result["shutdown_error"] = repr(exc)
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
        result["left"] = _wait_no_processes(60)
        timings["down"] = time.monotonic() - t0
        result["timings"] = timings
        Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
