"""Request body limits: how large a request's body may be, reading a body within its limit
(hashing it as it streams, for SigV4), and the guard the platform puts in front of its adapters.

Two limits (settings): real-time invocations take ``max_payload_bytes`` (SageMaker: 6 MB), every
other request ``max_request_bytes``. A ``Content-Length`` over the limit is answered at once,
without reading a byte; a body streamed without one is read until it passes the limit. The
answer is 413 in the request's wire format (:func:`refuse_too_large`): ``ValidationError`` on
the runtime wire (as its own size check answers), ``ValidationException`` on SageMaker's JSON
wire and the REST API, ``RequestEntityTooLarge`` on CloudWatch's wires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from shipway.api.runtime import RuntimeAPI
from shipway.api.wire import RequestWire, Wire, answer_error, wire_of
from shipway.domain.errors import PayloadTooLarge

__all__ = [
    "BodyLimits",
    "BodyTooLarge",
    "Disconnected",
    "declared_length",
    "guard_body",
    "read_body",
    "refuse_too_large",
    "replay",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STATUS = 413


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


class BodyTooLarge(Exception):
    """A body passed its limit; ``size`` is what was declared or read when it did."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} > {limit}")
        self.size = size
        self.limit = limit


class Disconnected(Exception):
    """The client left before its body was read."""


@dataclass(frozen=True, slots=True)
class BodyLimits:
    request: int
    """Every request but invocations (settings: ``max_request_bytes``)."""
    invocation: int
    """Real-time invocations (settings: ``max_payload_bytes``)."""

    def of(self, scope: Scope) -> int:
        return self.invocation if RuntimeAPI.handles(scope) else self.request


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None when it has none (or not a number)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() else None
    return None


async def read_body(receive: Receive, limit: int, digest: Digest | None = None) -> bytes:
    """The whole body, raising :class:`BodyTooLarge` as soon as it passes ``limit`` bytes
    (nothing more is read) and :class:`Disconnected` if the client leaves; each piece goes
    through ``digest`` as it arrives."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size, limit)
        if chunk:
            chunks.append(chunk)
            if digest is not None:
                digest.update(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out the body already read, then defers to the server's."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def refuse_too_large(send: Send, wire: RequestWire, error: BodyTooLarge) -> None:
    """413 in the request's wire format."""
    if wire.wire is Wire.RUNTIME:
        code = "ValidationError"
        message = PayloadTooLarge(error.size, error.limit).message
    else:
        code = (
            "RequestEntityTooLarge"
            if wire.signing_name == "monitoring"
            else ("ValidationException")
        )
        message = (
            f"The request body of {error.size} bytes or more exceeds the limit of "
            f"{error.limit} bytes."
        )
    await answer_error(send, wire, STATUS, code, message)


async def guard_body(scope: Scope, receive: Receive, send: Send, limit: int) -> Receive | None:
    """Hold a request to ``limit``: the ``receive`` to hand the application, or None once the
    request has been answered (413) or its client has gone.

    A declared ``Content-Length`` within the limit costs nothing more: the HTTP server delivers
    no more body than it declares. A body without one is read here, within the limit, and
    replayed.
    """
    length = declared_length(scope)
    if length is not None:
        if length > limit:
            await refuse_too_large(send, wire_of(scope), BodyTooLarge(length, limit))
            return None
        return receive
    try:
        body = await read_body(receive, limit)
    except BodyTooLarge as exc:
        await refuse_too_large(send, wire_of(scope), exc)
        return None
    except Disconnected:
        return None
    return replay(body, receive)
