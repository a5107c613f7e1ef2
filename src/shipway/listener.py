"""The server's listening sockets, bound before anything else starts.

uvicorn binds its port only after the application's startup (which starts the controller, and
with it instances); a busy port then fails late, with a traceback. Binding first — the same
sockets asyncio's ``create_server`` would make, handed to uvicorn — makes a busy port one clear
error before anything is started, and leaves no window for another process to take the port.
"""

from __future__ import annotations

import errno
import socket

from shipway.domain.errors import ShipwayError

__all__ = ["PortUnavailable", "bind"]


class PortUnavailable(ShipwayError):
    """The address cannot be listened on (in use, not this machine's, privileged...)."""

    code = "PortUnavailable"


def bind(host: str, port: int) -> list[socket.socket]:
    """Bound, not yet listening, sockets for every address ``host`` resolves to (one for an
    IP address; IPv4 and IPv6 for ``localhost`` or an empty host). They are not inherited by
    child processes (instances)."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise PortUnavailable(f"cannot listen on {shown}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"{shown} is in use by another program; stop it or use --port"
            ) from None
        raise PortUnavailable(f"cannot listen on {shown}: {exc.strerror or exc}") from None
    return sockets
