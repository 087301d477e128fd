"""TF Serving gRPC client: Predict, GetModelMetadata and GetModelStatus with numpy in and out.

It speaks the public TF Serving protocol through the project's own generated protos, so it works
against vinoserve, OVMS or TensorFlow Serving and needs no TensorFlow. Tensors are converted with
the same code the server uses (:mod:`vinoserve.protocol.tfs_tensors`), which reads both
``tensor_content`` and the typed ``*_val`` fields of an answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from vinoserve.errors import VinoserveError
from vinoserve.protocol.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from vinoserve.protocol.tfs_tensors import array_to_tensor, tensor_to_array

from .tfs_types import (
    LABELS_FIELD,
    ClientError,
    ClientTlsFiles,
    TensorInfo,
    TfsModelMetadata,
    TfsVersionStatus,
    labels_of,
    state_name,
    tensor_infos,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "LABELS_FIELD",
    "MAX_MESSAGE_BYTES",
    "SIGNATURE",
    "SIGNATURE_FIELD",
    "ClientError",
    "ClientTlsFiles",
    "TensorInfo",
    "TfsClient",
    "TfsModelMetadata",
    "TfsVersionStatus",
    "decode_outputs",
    "predict_request",
]

# gRPC keeps message limits in a signed 32-bit int; its 4 MB default is smaller than a batch of
# 8 images of 3x224x224 float32 (4.8 MB), so the client lifts it as the server does.
MAX_MESSAGE_BYTES = 2**31 - 1
DEFAULT_TIMEOUT_S = 10.0
SIGNATURE = "serving_default"
SIGNATURE_FIELD = "signature_def"


def decode_outputs(response: Any) -> dict[str, np.ndarray]:
    """All outputs of a ``PredictResponse`` as numpy arrays."""
    try:
        return {name: tensor_to_array(t, name) for name, t in response.outputs.items()}
    except VinoserveError as err:
        raise ClientError(f"cannot decode the answer: {err.text}") from err


def predict_request(
    model_name: str,
    inputs: Mapping[str, np.ndarray],
    version: int | None = None,
    outputs: Iterable[str] = (),
) -> Any:
    """Build a ``PredictRequest``; tensors travel in ``tensor_content``."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    if version:
        request.model_spec.version.value = version
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(array_to_tensor(np.asarray(array)))
    request.output_filter.extend(outputs)
    return request


class TfsClient:
    """A channel to one TF Serving gRPC endpoint (``host:port``), plain or TLS.

    Every call raises :class:`ClientError` on failure and takes an optional per-call
    ``timeout`` in seconds (default: the client's). Use it as a context manager or ``close()`` it.
    """

    def __init__(
        self,
        address: str,
        *,
        tls: ClientTlsFiles | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self.timeout = timeout
        opts = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            *options,
        ]
        if tls is not None:
            self.channel = grpc.secure_channel(address, tls.credentials(), options=opts)
        else:
            self.channel = grpc.insecure_channel(address, options=opts)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def __enter__(self) -> TfsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as err:
            raise ClientError.from_rpc(err) from None

    def predict_raw(self, request: Any, timeout: float | None = None) -> Any:
        """Send a prepared ``PredictRequest``; the ``PredictResponse`` as it came."""
        return self._call(self._prediction.Predict, request, timeout)

    def predict(
        self,
        model_name: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: int | None = None,
        outputs: Iterable[str] = (),
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the model on ``inputs``; the outputs (all, or those named in ``outputs``) by name."""
        request = predict_request(model_name, inputs, version, outputs)
        return decode_outputs(self.predict_raw(request, timeout))

    def metadata(self, model_name: str, version: int | None = None, timeout: float | None = None) -> TfsModelMetadata:
        """The model's ``serving_default`` signature (shapes as currently compiled)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = model_name
        if version:
            request.model_spec.version.value = version
        request.metadata_field.append(SIGNATURE_FIELD)
        response = self._call(self._prediction.GetModelMetadata, request, timeout)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        if SIGNATURE_FIELD not in response.metadata or not response.metadata[SIGNATURE_FIELD].Unpack(sig_map):
            raise ClientError(f"the metadata of model {model_name} has no {SIGNATURE_FIELD}")
        if SIGNATURE in sig_map.signature_def:
            sig = sig_map.signature_def[SIGNATURE]
        elif sig_map.signature_def:  # a TF SavedModel may name its only signature differently
            sig = sig_map.signature_def[sorted(sig_map.signature_def)[0]]
        else:
            raise ClientError(f"the metadata of model {model_name} has no signature")
        return TfsModelMetadata(
            name=response.model_spec.name or model_name,
            version=int(response.model_spec.version.value),
            inputs=tensor_infos(sig.inputs),
            outputs=tensor_infos(sig.outputs),
            labels=labels_of(response.metadata),
        )

    def status(
        self, model_name: str, version: int | None = None, timeout: float | None = None
    ) -> list[TfsVersionStatus]:
        """State of one version, or of every version the server knows when ``version`` is None."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        if version:
            request.model_spec.version.value = version
        response = self._call(self._models.GetModelStatus, request, timeout)
        return [
            TfsVersionStatus(int(s.version), state_name(s.state), int(s.status.error_code), s.status.error_message)
            for s in response.model_version_status
        ]

    def wait_available(
        self, model_name: str, version: int | None = None, timeout: float = 60.0, poll_s: float = 0.2
    ) -> TfsVersionStatus:
        """Poll GetModelStatus until a version is AVAILABLE; return its status.

        A server that is not listening yet or does not know the model yet is waited for. Raises
        :class:`ClientError` on timeout (naming the last state seen) or as soon as every version
        reported carries a load error.
        """
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                statuses = self.status(model_name, version, timeout=max(poll_s, 1.0))
            except ClientError as err:
                if err.code not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise
                last = str(err)
            else:
                for st in statuses:
                    if st.state == "AVAILABLE":
                        return st
                failed = [st for st in statuses if st.error_code != 0]
                if statuses and len(failed) == len(statuses):
                    st = failed[0]
                    raise ClientError(f"model {model_name} version {st.version} failed to load: {st.error_message}")
                last = ", ".join(f"version {st.version} {st.state}" for st in statuses) or "no versions"
            if time.monotonic() >= deadline:
                raise ClientError(f"model {model_name} is not AVAILABLE after {timeout:g} s (last: {last})")
            time.sleep(poll_s)
