"""The HTTP under :class:`~shipway.cli.client.ShipwayClient`: one request and its answer, over
the standard library's :mod:`http.client`.

The command line makes one to a few requests per run, to one server, so it needs no pool, no
HTTP/2 and no async: http.client is enough, and it imports in a few milliseconds where httpx
and httpcore take 60 to 80 (a quarter of a command's start time). Each request has a connection
of its own (``Connection: close``), so no stale keep-alive connection is ever reused.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["ConnectFailed", "InvalidURL", "Response", "request"]


class ConnectFailed(OSError):
    """No connection could be made (refused, unknown host, connect timeout): nothing was sent."""


class InvalidURL(ValueError):
    """The base URL is not an ``http://`` or ``https://`` URL with a host."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    """Header names in lower case."""
    content: bytes

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        return jsonlib.loads(self.content)


def request(
    base_url: str,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 5.0,
) -> Response:
    """Send one request to ``base_url`` + ``path`` (``?params``), with a JSON body (``json``)
    or raw bytes (``content``); the answer whatever its status.

    Raises :class:`InvalidURL`, :class:`ConnectFailed`, or an ``OSError`` /
    ``http.client.HTTPException`` for a failure once connected (a read timeout...).
    """
    url = urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InvalidURL(f"{base_url} is not an http:// or https:// URL")
    try:
        port = url.port
    except ValueError as exc:
        raise InvalidURL(str(exc)) from exc
    connection: http.client.HTTPConnection
    if url.scheme == "https":
        connection = http.client.HTTPSConnection(
            url.hostname, port, timeout=connect_timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(url.hostname, port, timeout=connect_timeout)
    target = url.path.rstrip("/") + path
    if params:
        target += "?" + urlencode(params)
    sent = {"Connection": "close", **(headers or {})}
    body = content
    if json is not None:
        body = jsonlib.dumps(json).encode()
        sent.setdefault("Content-Type", "application/json")
    try:
        try:
            connection.connect()
        except OSError as exc:
            raise ConnectFailed(str(exc)) from exc
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        connection.request(method, target, body=body, headers=sent)
        answer = connection.getresponse()
        data = answer.read()
        return Response(
            answer.status,
            answer.reason,
            {name.lower(): value for name, value in answer.getheaders()},
            data,
        )
    finally:
        connection.close()
