"""Values of the TF Serving client (:mod:`vinoserve.client.tfs`): its error, its TLS files, and
what metadata and status calls answer, with the helpers that read them out of the response protos.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from vinoserve.protocol.generated.tensorflow.core.framework import tensor_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import get_model_status_pb2
from vinoserve.protocol.tfs_tensors import dtype_name

# Optional extra entry of GetModelMetadataResponse.metadata: a TensorProto of class names.
# Servers that do not send it (TF Serving, OVMS) simply leave ``TfsModelMetadata.labels`` empty.
LABELS_FIELD = "labels"

_State = get_model_status_pb2.ModelVersionStatus.State


class ClientError(Exception):
    """A failed call or a local mistake, printable on one line (``CODE: details``)."""

    def __init__(self, details: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}" if self.code is not None else self.details

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> ClientError:
        """Wrap a ``grpc.RpcError`` raised by a stub call."""
        code = err.code() if isinstance(err, grpc.Call) else None
        details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
        return cls(" ".join(details.split()), code)


@dataclass(frozen=True)
class ClientTlsFiles:
    """PEM files for a TLS channel; every one is optional.

    ``server_cert`` is the CA (or self-signed certificate) the server's certificate is checked
    against; without it the system roots are used. ``client_cert`` and ``client_key`` enable
    mutual TLS and go together.
    """

    server_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the files and build the channel credentials."""
        if (self.client_cert is None) != (self.client_key is None):
            raise ClientError("a client certificate and a client key go together: give both or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.server_cert, "server certificate"),
            private_key=_read(self.client_key, "client key"),
            certificate_chain=_read(self.client_cert, "client certificate"),
        )


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: TF dtype name (``DT_FLOAT``) and shape (-1 = any)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TfsModelMetadata:
    """The ``serving_default`` signature of a model version, and class names if the server sent them."""

    name: str
    version: int
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class TfsVersionStatus:
    """One entry of GetModelStatus: state name (``AVAILABLE``) and the status it carries."""

    version: int
    state: str
    error_code: int
    error_message: str


def tensor_infos(entries: Mapping[str, Any]) -> dict[str, TensorInfo]:
    """The inputs or outputs of a ``SignatureDef`` by key, in key order."""
    return {
        key: TensorInfo(info.name or key, dtype_name(info.dtype), tuple(int(d.size) for d in info.tensor_shape.dim))
        for key, info in sorted(entries.items())
    }


def state_name(state: int) -> str:
    """The name of a ``ModelVersionStatus.State`` (its number when this proto does not know it)."""
    try:
        return str(_State.Name(state))
    except ValueError:
        return str(state)


def labels_of(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The class names in a GetModelMetadataResponse's metadata, or () when the server sent none."""
    if LABELS_FIELD not in metadata:
        return ()
    proto = tensor_pb2.TensorProto()
    if not metadata[LABELS_FIELD].Unpack(proto):
        return ()
    return tuple(v.decode("utf-8", "replace") for v in proto.string_val)
