"""Self-signed certificates, and a small TLS gRPC server with the quadrant model's known answers.

vinoserve serves no TLS yet, so the example client's TLS flags are tested against this server.
"""

from __future__ import annotations

import datetime
import ipaddress
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vinoserve.protocol.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from vinoserve.protocol.grpc.convert import array_to_tensor, tensor_to_array

from .example_client import NAMES


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost``/127.0.0.1 and its key, as PEM files."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    pkey = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(pkey.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pkey, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert, key


class _Quadrants(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict like the quadrant model (numpy); metadata with the class names as labels."""

    def Predict(self, request: Any, context: Any) -> Any:
        x = tensor_to_array(request.inputs["image"], "image")
        logits = x.reshape(len(x), 3, 2, 4, 2, 4).mean(axis=(3, 5)).sum(axis=1).reshape(len(x), 4)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        response = predict_pb2.PredictResponse()
        response.outputs["probabilities"].CopyFrom(array_to_tensor((e / e.sum(1, keepdims=True)).astype("f4")))
        return response

    def GetModelMetadata(self, request: Any, context: Any) -> Any:
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        sig_map.signature_def["serving_default"].method_name = "tensorflow/serving/predict"
        response.metadata["signature_def"].Pack(sig_map)
        response.metadata["labels"].Pack(array_to_tensor(np.array(NAMES, dtype=object)))
        return response


def tls_server(server_cert: Path, server_key: Path, client_ca: Path | None = None) -> tuple[grpc.Server, int]:
    """Start the TLS server on a free loopback port; with ``client_ca`` it demands client certificates."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Quadrants(), server)
    creds = grpc.ssl_server_credentials(
        [(server_key.read_bytes(), server_cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )
    port = server.add_secure_port("localhost:0", creds)
    server.start()
    return server, port
