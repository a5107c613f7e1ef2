"""Which wire a request speaks, told from its path and headers alone (before its body is read),
and an error answered in that wire's format by the layers in front of the adapters
(authentication, body size limits).

One listener serves five wires:

- **JSON**: AWS JSON 1.0/1.1, ``POST /`` with ``X-Amz-Target: <Service>.<Operation>`` (SageMaker's
  control plane, CloudWatch's JSON 1.0, Application Auto Scaling);
- **CBOR**: Smithy RPC v2 CBOR, ``POST /service/<Service>/operation/<Operation>`` (CloudWatch);
- **query**: awsquery, ``POST /`` with a form body (CloudWatch for older botocore, SNS); the
  service is the one its SigV4 credential is scoped to (``sns``; anything else: CloudWatch's);
- **runtime**: ``/endpoints/...``, SageMaker's runtime (and the REST API's invocation path);
- **REST**: everything else, Shipway's own API.

:data:`SIGNING_NAMES` is the one table of the SigV4 service name (botocore's ``signingName``,
else its ``endpointPrefix``) each service's requests are signed with; a new service is one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cbor2
import orjson

from shipway.api import awsquery

__all__ = ["SIGNING_NAMES", "RequestWire", "Wire", "answer_error", "wire_of"]

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Wire(StrEnum):
    JSON = "json"
    CBOR = "cbor"
    QUERY = "query"
    RUNTIME = "runtime"
    REST = "rest"


SIGNING_NAMES: dict[tuple[Wire, str], str] = {
    # (wire, Smithy service name: the X-Amz-Target prefix or /service/<name>/) -> signing name
    (Wire.JSON, "SageMaker"): "sagemaker",
    (Wire.JSON, "GraniteServiceVersion20100801"): "monitoring",  # CloudWatch (no signingName)
    (Wire.CBOR, "GraniteServiceVersion20100801"): "monitoring",
    (Wire.JSON, "AnyScaleFrontendService"): "application-autoscaling",
    (Wire.QUERY, ""): "monitoring",  # unsigned, or scoped to no awsquery service: CloudWatch
    (Wire.QUERY, "monitoring"): "monitoring",
    (Wire.QUERY, "sns"): "sns",
    (Wire.RUNTIME, ""): "sagemaker",  # sagemaker-runtime signs as "sagemaker"
    (Wire.REST, ""): "sagemaker",
}
"""The SigV4 service a request must be scoped to. Requests no row names (an unknown
``X-Amz-Target`` prefix, which the SageMaker adapter answers) are Shipway's own: ``sagemaker``."""

_DEFAULT_SIGNING_NAME = "sagemaker"
_CBOR_PREFIX = "/service/"
_FORM = b"application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class RequestWire:
    """The wire of one request and the service it addresses (``""`` where the wire has one)."""

    wire: Wire
    service: str = ""

    @property
    def signing_name(self) -> str:
        """The SigV4 service name the request's credential must be scoped to."""
        return SIGNING_NAMES.get((self.wire, self.service), _DEFAULT_SIGNING_NAME)


def wire_of(scope: Scope) -> RequestWire:
    """The wire a request speaks, from its path and headers."""
    path: str = scope["path"]
    form = False
    for name, value in scope["headers"]:
        if name == b"x-amz-target":
            return RequestWire(Wire.JSON, value.decode("latin-1").partition(".")[0])
        if name == b"content-type":
            form = value.startswith(_FORM)
    if path.startswith(_CBOR_PREFIX):
        return RequestWire(Wire.CBOR, path[len(_CBOR_PREFIX) :].partition("/")[0])
    if path == "/" and form:
        service = _credential_service(scope)
        return RequestWire(Wire.QUERY, service if (Wire.QUERY, service) in SIGNING_NAMES else "")
    return RequestWire(Wire.RUNTIME if path.startswith("/endpoints/") else Wire.REST)


def _credential_service(scope: Scope) -> str:
    """The service an ``Authorization`` header's SigV4 credential names (``""`` if none)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            credential = value.partition(b"Credential=")[2].partition(b",")[0]
            parts = credential.strip().split(b"/")
            return parts[3].decode("latin-1") if len(parts) == 5 else ""
    return ""


async def answer_error(send: Send, wire: RequestWire, status: int, code: str, message: str) -> None:
    """Answer ``status`` with an error document in the request's wire format."""
    extra: list[tuple[bytes, bytes]] = []
    if wire.wire is Wire.JSON:
        content_type = b"application/x-amz-json-1.1"
        body = orjson.dumps({"__type": code, "message": message})
    elif wire.wire is Wire.CBOR:
        content_type = b"application/cbor"
        body = bytes(cbor2.dumps({"__type": code, "message": message}))
        extra.append((b"smithy-protocol", b"rpc-v2-cbor"))
    elif wire.wire is Wire.QUERY:
        content_type = b"text/xml"
        body = awsquery.encode_error("Sender", code, message, "")
    elif wire.wire is Wire.RUNTIME:
        content_type = b"application/json"
        body = orjson.dumps({"message": message})
        extra.append((b"x-amzn-errortype", code.encode()))
    else:
        content_type = b"application/json"
        body = orjson.dumps({"code": code, "message": message})
    if wire.signing_name == "monitoring":  # CloudWatch is awsQueryCompatible
        extra.append((b"x-amzn-query-error", f"{code};Sender".encode()))
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
