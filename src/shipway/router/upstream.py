"""Kept-alive HTTP/1.1 connections from the router to one instance (Unix socket or TCP).

A minimal client on asyncio protocols and httptools' response parser: the router's hop to an
instance is on every request's path, and general-purpose clients cost several times more CPU per
request than the model server they call. It speaks only what the model server needs: one request
at a time per connection, ``Content-Length`` bodies out, any framing back.

A request body is bytes, or a :class:`BodySource` (a size and the chunks to send, for payloads
too large to hold: an asynchronous request's input object streams from its store to the
instance with the transport's flow control, never more than a few chunks in memory).

:meth:`Upstream.request` answers with the whole response; :meth:`Upstream.request_stream` answers
once the status and headers are in, and hands the body over as it arrives (its own connections,
so the buffered path carries nothing for it).

Errors say whether the request could have reached the instance:

- :class:`ConnectFailed`: no connection, nothing was sent; safe to try another instance.
- :class:`ConnectionLost`: the instance went away while the request was in flight.
- :class:`UpstreamTimeout`: no complete answer in time; the connection is dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import httptools

__all__ = [
    "BodySource",
    "ConnectFailed",
    "ConnectionLost",
    "Upstream",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamStream",
    "UpstreamTimeout",
]


class UpstreamError(Exception):
    pass


class ConnectFailed(UpstreamError):
    pass


class ConnectionLost(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class BodySource(Protocol):
    """A request body sent as it is read: ``size`` bytes (its Content-Length) in chunks."""

    @property
    def size(self) -> int: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


@dataclass
class UpstreamResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._keep_alive = True
        self._writable: asyncio.Future[None] | None = None
        """Set while the transport's write buffer is over its high-water mark."""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def send_body(self, source: BodySource) -> None:
        """Write a streamed body, waiting whenever the instance reads slower than it comes."""
        sent = 0
        async for chunk in source.chunks():
            if self.closed or self.transport is None:
                raise ConnectionLost("the instance closed the connection during the request")
            self.transport.write(chunk)
            sent += len(chunk)
            if self._writable is not None:
                await self._writable
        if sent != source.size:
            self._keep_alive = False
            raise ConnectionLost(f"the request body was {sent} bytes, not {source.size}")

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionLost(f"malformed response from the instance: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_exception(ConnectionLost("the instance closed the connection"))
        self._fail(ConnectionLost("the instance closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(
                UpstreamResponse(
                    self._parser.get_status_code(), self._headers, b"".join(self._body)
                )
            )

    # the client side
    def send(self, data: bytes, waiter: asyncio.Future[UpstreamResponse]) -> None:
        self._headers = {}
        self._body = []
        self._waiter = waiter
        assert self.transport is not None
        self.transport.write(data)

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive and self._waiter is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


_HIGH_WATER = 64
"""Body pieces a stream buffers before it stops reading from the instance."""


class _StreamConnection(_Connection):
    """A connection whose response body is handed over piece by piece, as it arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 0
        self.complete = False
        self.error: UpstreamError | None = None
        self._pieces: deque[bytes] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._head = False
        self._paused = False

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._head = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)
        if len(self._pieces) >= _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()
        self.complete = True
        self._wake()

    def _fail(self, exc: Exception) -> None:
        if not self.complete and self.error is None:
            self.error = exc if isinstance(exc, UpstreamError) else ConnectionLost(str(exc))
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    # the client side
    def start(self, data: bytes) -> None:
        self._headers = {}
        self._pieces.clear()
        self.status = 0
        self._head = self.complete = False
        self.error = None
        assert self.transport is not None
        self.transport.write(data)

    async def _wait(self, timeout: float, address: str, what: str) -> None:
        """Wait for news (the head, data, the end, an error); UpstreamTimeout after ``timeout``."""
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup = loop.create_future()
        timer = loop.call_later(timeout, _expire, wakeup, address, timeout, what)
        try:
            await wakeup
        finally:
            timer.cancel()
            self._wakeup = None

    async def head(self, timeout: float, address: str) -> None:
        while not self._head:
            if self.error is not None:
                raise self.error
            await self._wait(timeout, address, "answer")

    async def next(self, timeout: float, address: str) -> bytes | None:
        while not self._pieces:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            await self._wait(timeout, address, "data")
        piece = self._pieces.popleft()
        if self._paused and len(self._pieces) < _HIGH_WATER // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return piece

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive and self.complete


class UpstreamStream:
    """A response whose body is still arriving: ``status`` and ``headers`` are in.

    Read it with :meth:`next` (or :meth:`read` for all of it), then :meth:`close` it: a
    complete response leaves its connection for the next stream, any other is dropped.
    """

    def __init__(self, upstream: Upstream, connection: _StreamConnection) -> None:
        self._upstream = upstream
        self._connection: _StreamConnection | None = connection
        self.status = connection.status
        self.headers = connection._headers

    async def next(self, timeout: float) -> bytes | None:
        """The next piece of the body, None at its end.

        Raises :class:`UpstreamTimeout` when nothing arrives within ``timeout`` seconds and
        :class:`ConnectionLost` when the body ends abnormally (both drop the connection).
        """
        connection = self._connection
        if connection is None:
            return None
        try:
            return await connection.next(timeout, self._upstream.address)
        except BaseException:
            self.close()
            raise

    async def read(self, timeout: float) -> bytes:
        """The rest of the body."""
        pieces = []
        while (piece := await self.next(timeout)) is not None:
            pieces.append(piece)
        return b"".join(pieces)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._upstream._release_stream(connection)


_C = TypeVar("_C", bound=_Connection)


async def _send_then_head(
    connection: _StreamConnection, body: BodySource, timeout: float, address: str
) -> None:
    """Stream the body while waiting for the answer's head: an instance may answer (an error)
    before it has read everything, and a body that fails to read must not wait out the
    timeout. A body not sent to its end leaves the connection unfit for another request."""
    sender = asyncio.ensure_future(connection.send_body(body))
    head = asyncio.ensure_future(connection.head(timeout, address))
    try:
        await asyncio.wait((sender, head), return_when=asyncio.FIRST_COMPLETED)
        if sender.done():
            sender.result()  # the body's own failure, if it failed
        await head
    finally:
        for task in (sender, head):
            if not task.done():
                task.cancel()
        if not sender.done() or sender.cancelled() or sender.exception() is not None:
            connection._keep_alive = False


def _expire(
    waiter: asyncio.Future[UpstreamResponse] | asyncio.Future[None],
    address: str,
    timeout: float,
    what: str = "answer",
) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout(f"no {what} from {address} within {timeout:g} s"))


C = TypeVar("C", bound="_Reusable")


class _Reusable(Protocol):
    @property
    def reusable(self) -> bool: ...


def _reusable(idle: deque[C]) -> C | None:
    """The most recently idle connection still fit for a request, dropping the rest."""
    while idle:
        connection = idle.pop()
        if connection.reusable:
            return connection
    return None


class Upstream:
    """A pool of kept-alive connections to one instance address."""

    def __init__(self, address: str, *, max_idle: int = 256) -> None:
        self.address = address
        self._max_idle = max_idle
        self._idle: deque[_Connection] = deque()
        self._idle_streams: deque[_StreamConnection] = deque()
        self._host = b"localhost"
        if address.startswith("http://"):
            host, _, port = address[len("http://") :].rstrip("/").partition(":")
            self._tcp: tuple[str, int] | None = (host, int(port or 80))
            self._host = address[len("http://") :].rstrip("/").encode()
            self._path: str | None = None
        elif address.startswith("unix:"):
            self._tcp = None
            self._path = address[len("unix:") :]
        else:
            raise ValueError(f"unsupported instance address {address!r}")

    async def _connect(self, factory: type[_C]) -> _C:
        loop = asyncio.get_running_loop()
        try:
            if self._tcp is not None:
                transport, protocol = await loop.create_connection(factory, *self._tcp)
            else:
                assert self._path is not None
                transport, protocol = await loop.create_unix_connection(factory, self._path)
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.address}: {exc}") from exc
        protocol.transport = transport  # uvloop may call connection_made only after this returns
        return protocol

    def _message(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | BodySource,
    ) -> bytes:
        """The request as it goes on the wire: head, headers, ``Content-Length`` body (only
        the head for a streamed body)."""
        size = len(body) if isinstance(body, bytes) else body.size
        head = [method, b" ", path, b" HTTP/1.1\r\nhost: ", self._host, b"\r\ncontent-length: ",
                str(size).encode(), b"\r\n"]  # fmt: skip
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        return b"".join(head) + body if isinstance(body, bytes) else b"".join(head)

    async def request(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
    ) -> UpstreamResponse:
        connection = _reusable(self._idle) or await self._connect(_Connection)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[UpstreamResponse] = loop.create_future()
        # one timer a request (cheaper than asyncio.wait_for, which wraps the wait in a task)
        timer = loop.call_later(timeout, _expire, waiter, self.address, timeout)
        connection.send(self._message(method, path, headers, body), waiter)
        try:
            response = await waiter
        except BaseException:
            connection.close()  # a timeout, a lost connection, or the caller gave up
            raise
        finally:
            timer.cancel()
        if connection.reusable and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        return response

    async def request_stream(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | BodySource,
        timeout: float,
    ) -> UpstreamStream:
        """Send a request; answer once the status and headers are in (within ``timeout``,
        which a streamed body's upload is part of).

        The body follows through the returned stream, which the caller must close. A streamed
        request body that fails to read raises what its source raised.
        """
        connection = _reusable(self._idle_streams) or await self._connect(_StreamConnection)
        connection.start(self._message(method, path, headers, body))
        try:
            if isinstance(body, bytes):
                await connection.head(timeout, self.address)
            else:
                await _send_then_head(connection, body, timeout, self.address)
        except BaseException:
            connection.close()
            raise
        return UpstreamStream(self, connection)

    def _release_stream(self, connection: _StreamConnection) -> None:
        if connection.reusable and len(self._idle_streams) < self._max_idle:
            self._idle_streams.append(connection)
        else:
            connection.close()

    async def get(self, path: bytes, timeout: float) -> UpstreamResponse:
        return await self.request(b"GET", path, [], b"", timeout)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
        while self._idle_streams:
            self._idle_streams.pop().close()
