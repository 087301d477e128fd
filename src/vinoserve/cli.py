"""Command line (SPEC §1): flags as in OVMS; any start-up mistake is one line on stderr, exit 1."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from .config import PER_MODEL_KEYS, ModelConfig, ServerSettings, build_model_config, load_config_file
from .errors import StartupError
from .tls import tls_files

_LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise StartupError(message)


def _flag_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def make_parser() -> argparse.ArgumentParser:
    """The flag set of SPEC §1."""
    p = _Parser(prog="vinoserve", description="OpenVINO model server (TF Serving and KServe v2 APIs).")
    a = p.add_argument
    a("--port", type=int, default=0, help="gRPC port (0: no gRPC server)")
    a("--rest_port", type=int, default=0, help="HTTP port (0: no HTTP server)")
    a("--grpc_bind_address", default="0.0.0.0")
    a("--rest_bind_address", default="0.0.0.0")
    a("--model_name")
    a("--model_path")
    a("--config_path")
    a("--batch_size", help="N, -1, a:b or auto")
    a("--shape", help="(1,3,224,224), auto, or JSON per input")
    a("--layout", help="NCHW, NHWC:NCHW, or JSON per input")
    a("--model_version_policy", help='e.g. {"latest":{"num_versions":1}}')
    a("--nireq", type=int, help="infer requests per model version (0: OpenVINO's optimum)")
    a("--target_device", help="OpenVINO device (CPU)")
    a("--plugin_config", help="JSON of OpenVINO properties")
    a("--file_system_poll_wait_seconds", type=float, default=1.0)
    a("--log_level", default="INFO", choices=list(_LEVELS))
    a("--metrics_enable", type=_flag_bool, nargs="?", const=True, default=False)
    a("--cache_dir")
    a("--max_request_mb", type=int, default=1024)
    a("--shape_variants", type=int, default=4, help="compiled shape variants kept per version under auto")
    a("--dynamic_batching", help='single-model mode: JSON, e.g. {"max_batch_size":16,"max_queue_delay_ms":2}')
    a("--tls_cert", help="PEM certificate chain: both ports serve TLS (with --tls_key)")
    a("--tls_key", help="PEM private key of --tls_cert")
    a("--tls_client_ca", help="PEM CA bundle: clients must present a certificate it signed (mutual TLS)")
    a(
        "--shutdown_timeout_s",
        type=float,
        default=30.0,
        help="on SIGTERM/SIGINT, in-flight requests get this long before they are cancelled",
    )
    a("--warmup_batch_sizes", help="e.g. 1,8: compiled and run on zeros before the model is AVAILABLE")
    return p


def _check_port(value: int, flag: str) -> None:
    if not 0 <= value <= 65535:
        raise StartupError(f"{flag} must be between 0 and 65535, got {value}")


def build_settings(argv: list[str]) -> ServerSettings:
    """Parse and validate flags into settings; raises StartupError with one clear line."""
    ns = make_parser().parse_args(argv)
    _check_port(ns.port, "--port")
    _check_port(ns.rest_port, "--rest_port")
    if ns.port == 0 and ns.rest_port == 0:
        raise StartupError("At least one of --port and --rest_port must be set")
    if ns.port == ns.rest_port:
        raise StartupError(f"--port and --rest_port must differ (both are {ns.port})")
    if ns.max_request_mb <= 0:
        raise StartupError("--max_request_mb must be positive")
    if ns.shape_variants < 1:
        raise StartupError("--shape_variants must be at least 1")
    if ns.file_system_poll_wait_seconds < 0:
        raise StartupError("--file_system_poll_wait_seconds must not be negative")
    if not ns.shutdown_timeout_s >= 0:  # also refuses nan
        raise StartupError("--shutdown_timeout_s must not be negative")
    tls = tls_files(ns.tls_cert, ns.tls_key, ns.tls_client_ca)
    if ns.metrics_enable and ns.rest_port == 0:
        raise StartupError("--metrics_enable needs --rest_port")
    given = [f for f in ("model_name", "model_path", *PER_MODEL_KEYS) if getattr(ns, f) is not None]
    if ns.config_path:
        if given:
            raise StartupError(
                f"Model parameters in CLI are exclusive with the config file (--config_path with --{given[0]})"
            )
        models, metrics = load_config_file(Path(ns.config_path), ns.shape_variants)
        config_path: Path | None = Path(ns.config_path)
        metrics_enable = ns.metrics_enable or metrics
    else:
        if not ns.model_name or not ns.model_path:
            missing = "--model_path" if ns.model_name else "--model_name"
            raise StartupError(f"{missing} is required (or --config_path)")
        models = (model_from_flags(ns),)
        config_path, metrics_enable = None, ns.metrics_enable
    return ServerSettings(
        port=ns.port,
        rest_port=ns.rest_port,
        grpc_bind_address=ns.grpc_bind_address,
        rest_bind_address=ns.rest_bind_address,
        models=models,
        config_path=config_path,
        file_system_poll_wait_seconds=ns.file_system_poll_wait_seconds,
        log_level=ns.log_level,
        metrics_enable=metrics_enable,
        cache_dir=ns.cache_dir,
        max_request_mb=ns.max_request_mb,
        shape_variants=ns.shape_variants,
        tls=tls,
        shutdown_timeout_s=ns.shutdown_timeout_s,
    )


def model_from_flags(ns: argparse.Namespace) -> ModelConfig:
    """The single model of ``--model_name``/``--model_path`` with the per-model flags."""
    # an empty --model_version_policy, --plugin_config or --target_device leaves its default
    return build_model_config(
        ns.model_name,
        ns.model_path,
        relative_to=Path.cwd(),
        default_shape_variants=ns.shape_variants,
        label=_flag_name,
        batch_size=ns.batch_size,
        shape=ns.shape,
        layout=ns.layout,
        model_version_policy=ns.model_version_policy or None,
        nireq=ns.nireq,
        target_device=ns.target_device or None,
        plugin_config=ns.plugin_config or None,
        warmup_batch_sizes=ns.warmup_batch_sizes or None,
        dynamic_batching=ns.dynamic_batching,
    )


def _flag_name(key: str) -> str:
    return "--model_path" if key == "base_path" else f"--{key}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vinoserve``."""
    try:
        settings = build_settings(sys.argv[1:] if argv is None else argv)
    except StartupError as exc:
        print(f"vinoserve: error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=_LEVELS[settings.log_level], format="[%(asctime)s][%(process)d][%(name)s][%(levelname)s] %(message)s"
    )
    from .server import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
