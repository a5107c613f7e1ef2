"""Kept-alive HTTP/1.1 connections from the router to one instance (Unix socket or TCP).

A minimal client on asyncio protocols and httptools' response parser: the router's hop to an
instance is on every request's path, and general-purpose clients cost several times more CPU per
request than the model server they call. It speaks only what the model server needs: one request
at a time per connection, ``Content-Length`` bodies out, any framing back.

Errors say whether the request could have reached the instance:

- :class:`ConnectFailed`: no connection, nothing was sent; safe to try another instance.
- :class:`ConnectionLost`: the instance went away while the request was in flight.
- :class:`UpstreamTimeout`: no complete answer in time; the connection is dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import httptools

__all__ = [
    "ConnectFailed",
    "ConnectionLost",
    "Upstream",
    "UpstreamError",
    "UpstreamResponse",
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

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionLost(f"malformed response from the instance: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
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


def _expire(waiter: asyncio.Future[UpstreamResponse], address: str, timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout(f"no answer from {address} within {timeout:g} s"))


class Upstream:
    """A pool of kept-alive connections to one instance address."""

    def __init__(self, address: str, *, max_idle: int = 256) -> None:
        self.address = address
        self._max_idle = max_idle
        self._idle: deque[_Connection] = deque()
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

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            if self._tcp is not None:
                transport, protocol = await loop.create_connection(_Connection, *self._tcp)
            else:
                assert self._path is not None
                transport, protocol = await loop.create_unix_connection(_Connection, self._path)
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.address}: {exc}") from exc
        protocol.transport = transport  # uvloop may call connection_made only after this returns
        return protocol

    async def request(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
    ) -> UpstreamResponse:
        connection = None
        while self._idle:
            candidate = self._idle.pop()
            if candidate.reusable:
                connection = candidate
                break
        if connection is None:
            connection = await self._connect()
        head = [method, b" ", path, b" HTTP/1.1\r\nhost: ", self._host, b"\r\ncontent-length: ",
                str(len(body)).encode(), b"\r\n"]  # fmt: skip
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[UpstreamResponse] = loop.create_future()
        # one timer a request (cheaper than asyncio.wait_for, which wraps the wait in a task)
        timer = loop.call_later(timeout, _expire, waiter, self.address, timeout)
        connection.send(b"".join(head) + body, waiter)
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

    async def get(self, path: bytes, timeout: float) -> UpstreamResponse:
        return await self.request(b"GET", path, [], b"", timeout)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
