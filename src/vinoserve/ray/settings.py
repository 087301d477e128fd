"""A replica's settings from a Ray Serve config's ``args``: vinoserve's own flags, less the proxies'."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from vinoserve.cli import build_settings
from vinoserve.config import ServerSettings
from vinoserve.errors import StartupError

# Flags that belong to Ray Serve's proxies, not to a replica.
_PROXY_FLAGS = (
    "--port",
    "--rest_port",
    "--grpc_bind_address",
    "--rest_bind_address",
    "--tls_cert",
    "--tls_key",
    "--tls_client_ca",
)


def flags_from_args(args: Mapping[str, Any] | Sequence[str]) -> list[str]:
    """vinoserve flags from a Serve config's ``args``: a list of flags, or a mapping ``{flag: value}``."""
    if isinstance(args, Mapping):
        argv: list[str] = []
        for key, value in args.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            argv.append(f"--{key.removeprefix('--')}={value}")
        return argv
    return [str(a) for a in args]


def replica_settings(argv: Sequence[str]) -> ServerSettings:
    """Settings of one replica: the standalone server's flags, less those of the proxies.

    Raises :class:`StartupError` for invalid flags, and for port, bind-address and TLS flags, which
    Ray Serve's ``http_options``/``grpc_options`` set instead.
    """
    for arg in argv:
        if arg.split("=", 1)[0] in _PROXY_FLAGS:
            raise StartupError(
                f"{arg.split('=', 1)[0]} is not used under Ray Serve: its proxies own the ports "
                "(set http_options and grpc_options in the Serve config)"
            )
    # The placeholder ports only satisfy the standalone checks; nothing is bound.
    settings = build_settings([*argv, "--port", "1", "--rest_port", "2"])
    return dataclasses.replace(settings, port=0, rest_port=0)
