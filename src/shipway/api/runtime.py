"""The SageMaker runtime wire adapter: ``POST /endpoints/{EndpointName}/invocations`` and
``.../invocations-response-stream``.

REST-JSON as boto3's ``sagemaker-runtime`` client speaks it: the body is the raw payload, the
parameters are headers, and errors carry their code in ``x-amzn-ErrorType`` (``ValidationError``,
``ModelError`` with ``OriginalStatusCode``/``OriginalMessage``, ``ServiceUnavailable``...).
A bare ASGI handler: this is every invocation's path, so no framework sits on it.

``InvokeEndpointWithResponseStream`` answers ``application/vnd.amazon.eventstream``: each piece of
the model's answer goes out as a ``PayloadPart`` event as it arrives, and a failure after the
answer started as an exception event (``ModelStreamError``, ``InternalStreamFailure``). Failures
before it started are the same JSON errors as ``InvokeEndpoint``'s.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from shipway.api import eventstream
from shipway.domain.async_inference import INLINE_BODY_BYTES, InvokeEndpointAsyncInput
from shipway.domain.errors import (
    ModelError,
    ModelNotReady,
    PayloadTooLarge,
    ServiceUnavailable,
    ShipwayError,
    Throttled,
    ValidationError,
)
from shipway.domain.shape import parse
from shipway.router.router import Invocation, ModelStreamError, Router
from shipway.service.async_invocations import AsyncInvocationService

__all__ = ["RuntimeAPI", "runtime_error"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = "/endpoints/"
INVOCATIONS = "/invocations"
STREAM = "/invocations-response-stream"
ASYNC = "/async-invocations"
OPERATIONS = (INVOCATIONS, STREAM, ASYNC)
JSON = b"application/json"
EVENT_STREAM = b"application/vnd.amazon.eventstream"
MAX_PART = 1 << 20
"""Bytes in one PayloadPart at most (botocore refuses event payloads over 24 MiB)."""


_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_HEADER_LIMITS = (
    (b"content-type", "contentType", 1024),
    (b"accept", "accept", 1024),
    (b"x-amzn-sagemaker-accept", "accept", 1024),
    (b"x-amzn-sagemaker-custom-attributes", "customAttributes", 1024),
    (b"x-amzn-sagemaker-target-variant", "targetVariant", 63),
    (b"x-amzn-sagemaker-inference-id", "inferenceId", 64),
    (b"x-amzn-sagemaker-target-model", "targetModel", 1024),
)
"""Header, the member it carries, and its longest value (reference §3)."""


def runtime_error(exc: Exception, account_id: str) -> tuple[int, str, dict[str, Any]]:
    """The status, ``x-amzn-ErrorType`` and JSON body of an error, as the runtime sends them."""
    if isinstance(exc, ModelError):
        return (
            424,
            "ModelError",
            {
                "Message": exc.message,
                "OriginalStatusCode": exc.original_status,
                "OriginalMessage": exc.original_message,
                # AWS names the CloudWatch log stream; Shipway the file the instance that
                # answered writes its log to (botocore reads the member as a plain string)
                "LogStreamArn": exc.log
                or f"arn:aws:logs:us-east-1:{account_id}:log-group:/aws/sagemaker/Endpoints",
            },
        )
    if isinstance(exc, PayloadTooLarge):
        return 413, "ValidationError", {"message": exc.message}
    if isinstance(exc, ValidationError):
        return 400, "ValidationError", {"message": exc.message}
    if isinstance(exc, ModelNotReady):
        return 429, "ModelNotReadyException", {"message": exc.message}
    if isinstance(exc, ServiceUnavailable):
        return 503, "ServiceUnavailable", {"message": exc.message}
    if isinstance(exc, Throttled):  # AWS's JSON throttling error: botocore retries it
        return 400, "ThrottlingException", {"message": exc.message}
    if isinstance(exc, ShipwayError):
        return 500, "InternalFailure", {"message": exc.message}
    return 500, "InternalFailure", {"message": "An internal error occurred; see the server log."}


_ASYNC_HEADERS = (
    (b"x-amzn-sagemaker-content-type", "ContentType"),
    (b"x-amzn-sagemaker-accept", "Accept"),
    (b"x-amzn-sagemaker-custom-attributes", "CustomAttributes"),
    (b"x-amzn-sagemaker-inference-id", "InferenceId"),
    (b"x-amzn-sagemaker-inputlocation", "InputLocation"),
    (b"x-amzn-sagemaker-s3outputpathextension", "S3OutputPathExtension"),
    (b"x-amzn-sagemaker-filename", "Filename"),
    (b"x-amzn-sagemaker-requestttlseconds", "RequestTTLSeconds"),
    (b"x-amzn-sagemaker-invocationtimeoutseconds", "InvocationTimeoutSeconds"),
)
"""InvokeEndpointAsync's headers and the members they carry."""
_INTEGER_MEMBERS = frozenset({"RequestTTLSeconds", "InvocationTimeoutSeconds"})


class RuntimeAPI:
    def __init__(
        self, router: Router, async_invocations: AsyncInvocationService | None = None
    ) -> None:
        self.router = router
        self.async_invocations = async_invocations

    @staticmethod
    def handles(scope: Scope) -> bool:
        path: str = scope["path"]
        return scope["method"] == "POST" and path.startswith(PREFIX) and path.endswith(OPERATIONS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.endswith(ASYNC):
            await self._invoke_async(scope, receive, send)
            return
        if not path.endswith(INVOCATIONS):
            await self._stream(scope, receive, send)
            return
        name = path[len(PREFIX) : -len(INVOCATIONS)]
        headers = dict(scope["headers"])
        try:
            self._check(name, headers, INVOCATIONS)
            body = await self._read(receive)
            result = await self.router.invoke(_invocation(name, headers, body, b"accept"))
        except Exception as exc:
            await self._error(send, exc, name)
            return
        extra = [(b"x-amzn-invoked-production-variant", result.variant_name.encode())]
        if result.custom_attributes is not None:
            extra.append((b"x-amzn-sagemaker-custom-attributes", result.custom_attributes))
        await _respond(send, 200, result.body, result.content_type, extra)

    async def _invoke_async(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``InvokeEndpointAsync``: queue the request, answer 202 with where its answer goes."""
        path: str = scope["path"]
        name = path[len(PREFIX) : -len(ASYNC)]
        headers = dict(scope["headers"])
        try:
            self._check(name, headers, ASYNC, sized=False)
            if self.async_invocations is None:
                raise ValidationError("Asynchronous inference is not available on this server.")
            body = await _read_at_most(receive, INLINE_BODY_BYTES)
            request = parse(InvokeEndpointAsyncInput, _async_members(name, headers))
            queued = await asyncio.to_thread(self.async_invocations.invoke, request, body)
        except Exception as exc:
            await self._error(send, exc, name)
            return
        await _respond(
            send,
            202,
            orjson.dumps({"InferenceId": queued.inference_id}),
            JSON,
            [
                (b"x-amzn-sagemaker-outputlocation", queued.output_location.encode()),
                (b"x-amzn-sagemaker-failurelocation", queued.failure_location.encode()),
            ],
        )

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``InvokeEndpointWithResponseStream``: the answer as an event stream."""
        path: str = scope["path"]
        name = path[len(PREFIX) : -len(STREAM)]
        headers = dict(scope["headers"])
        try:
            self._check(name, headers, STREAM)
            body = await self._read(receive)
            # the stream operation carries Accept in X-Amzn-SageMaker-Accept (reference §1.3)
            stream = await self.router.invoke_stream(
                _invocation(name, headers, body, b"x-amzn-sagemaker-accept")
            )
        except Exception as exc:
            await self._error(send, exc, name)
            return
        response_headers = [
            (b"content-type", EVENT_STREAM),
            (b"x-amzn-sagemaker-content-type", stream.content_type),
            (b"x-amzn-invoked-production-variant", stream.variant_name.encode()),
        ]
        if stream.custom_attributes is not None:
            response_headers.append(
                (b"x-amzn-sagemaker-custom-attributes", stream.custom_attributes)
            )
        gone = asyncio.ensure_future(receive())  # completes with http.disconnect if the caller goes
        tail = b""
        try:
            await send({"type": "http.response.start", "status": 200, "headers": response_headers})
            async for piece in stream:
                for start in range(0, len(piece), MAX_PART):
                    part = piece[start : start + MAX_PART] if len(piece) > MAX_PART else piece
                    await send(
                        {
                            "type": "http.response.body",
                            "body": eventstream.payload_part(part),
                            "more_body": True,
                        }
                    )
                if gone.done():
                    return
        except ModelStreamError as exc:
            tail = eventstream.model_stream_error(exc.message, exc.error_code)
        except Exception:
            log.exception("streaming the answer of %s failed", name)
            tail = eventstream.internal_stream_failure(
                "An internal error occurred while streaming the response; see the server log."
            )
        finally:
            await stream.aclose()
            gone.cancel()
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _check(
        self, name: str, headers: dict[bytes, bytes], operation: str, *, sized: bool = True
    ) -> None:
        """The limits boto3 leaves to the server: the endpoint name, header lengths, size."""
        if not name or "/" in name:
            raise ValidationError(
                f"'{name}' is not an endpoint name; call /endpoints/{{EndpointName}}{operation}."
            )
        if len(name) > 63 or not _ENDPOINT_NAME.match(name):
            raise ValidationError(
                f"1 validation error detected: Value '{name}' at 'endpointName' failed to satisfy "
                f"constraint: Member must satisfy regular expression pattern: "
                f"{_ENDPOINT_NAME.pattern} and have length less than or equal to 63"
            )
        for header, field, limit in _HEADER_LIMITS:
            value = headers.get(header)
            if value is not None and (len(value) > limit or not value.isascii()):
                raise ValidationError(
                    f"1 validation error detected: Value at '{field}' failed to satisfy "
                    f"constraint: Member must be ASCII with length less than or equal to {limit}"
                )
        length = headers.get(b"content-length")
        if sized and length is not None and length.isdigit():
            self.router.check_size(int(length))

    async def _error(self, send: Send, exc: Exception, name: str) -> None:
        if not isinstance(exc, ShipwayError):
            log.exception("invocation of %s failed", name)
        status, code, document = runtime_error(exc, self.router.account_id)
        await _respond(
            send, status, orjson.dumps(document), JSON, [(b"x-amzn-errortype", code.encode())]
        )

    async def _read(self, receive: Receive) -> bytes:
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            self.router.check_size(len(body))
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            self.router.check_size(size)
            chunks.append(chunk)
        return b"".join(chunks)


def _async_members(name: str, headers: dict[bytes, bytes]) -> dict[str, object]:
    """InvokeEndpointAsync's members from its headers (the integers as integers)."""
    members: dict[str, object] = {"EndpointName": name}
    for header, member in _ASYNC_HEADERS:
        value = headers.get(header)
        if value is None:
            continue
        text = value.decode("latin-1")
        if member in _INTEGER_MEMBERS:
            if not text.strip().lstrip("-").isdigit():
                raise ValidationError(
                    f"1 validation error detected: Value '{text}' at '{member[0].lower()}"
                    f"{member[1:]}' failed to satisfy constraint: Member must be an integer"
                )
            members[member] = int(text)
        else:
            members[member] = text
    return members


async def _read_at_most(receive: Receive, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes (an inline asynchronous payload)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(size, limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _invocation(
    name: str, headers: dict[bytes, bytes], body: bytes, accept_header: bytes
) -> Invocation:
    """An invocation from the runtime's request headers (reference §1.3)."""
    target = headers.get(b"x-amzn-sagemaker-target-variant")
    return Invocation(
        endpoint_name=name,
        body=body,
        content_type=headers.get(b"content-type"),
        accept=headers.get(accept_header),
        custom_attributes=headers.get(b"x-amzn-sagemaker-custom-attributes"),
        inference_id=headers.get(b"x-amzn-sagemaker-inference-id"),
        target_variant=target.decode("latin-1") if target else None,
    )


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
