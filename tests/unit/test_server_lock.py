"""The server lock and the early-bound listener, in this process (the refusals of a real second
``shipway server`` are in tests/integration/test_server_startup.py)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from shipway.listener import PortUnavailable, bind
from shipway.server_lock import ServerInUse, ServerLock
from shipway.settings import Settings


def test_the_holder_is_written_into_the_lock_and_named_in_the_refusal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, port=18080)
    with ServerLock.acquire(settings) as lock:
        assert lock.held
        written = json.loads((home / "server.lock").read_text())
        assert written["pid"] == os.getpid()
        assert written["url"] == "http://127.0.0.1:18080"
        with pytest.raises(ServerInUse) as refused:
            ServerLock.acquire(Settings(home=home, port=18081))
        assert refused.value.message == (
            f"{home} is in use by another Shipway server "
            f"(pid {os.getpid()}, http://127.0.0.1:18080); stop it or use --home"
        )
        with pytest.raises(ServerInUse):
            ServerLock.check_free(home)
    assert not lock.held
    assert (home / "server.lock").read_text() == ""  # no stale holder
    ServerLock.check_free(home)
    with ServerLock.acquire(settings):  # released: the next server starts
        pass


def test_only_the_holder_may_do_what_needs_the_lock(tmp_path: Path) -> None:
    lock = ServerLock.acquire(Settings(home=tmp_path))
    lock.ensure_held()
    lock.release()
    lock.release()  # idempotent
    with pytest.raises(RuntimeError, match="not held"):
        lock.ensure_held()


def test_checking_a_data_dir_creates_nothing(tmp_path: Path) -> None:
    ServerLock.check_free(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_a_busy_port_is_one_clear_error() -> None:
    sockets = bind("127.0.0.1", 0)
    try:
        [sock] = sockets
        assert not sock.get_inheritable()  # instances never hold the server's port
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortUnavailable) as refused:
            bind("127.0.0.1", port)
        assert refused.value.message == (
            f"127.0.0.1:{port} is in use by another program; stop it or use --port"
        )
    finally:
        for sock in sockets:
            sock.close()


def test_an_address_that_is_not_this_machines_cannot_be_listened_on() -> None:
    with pytest.raises(PortUnavailable, match=r"^cannot listen on 192\.0\.2\.1:\d+: "):
        bind("192.0.2.1", 18082)  # TEST-NET-1: never a local address


def test_localhost_binds_every_address_it_names() -> None:
    sockets = bind("localhost", 0)
    try:
        assert {s.family for s in sockets} <= {socket.AF_INET, socket.AF_INET6}
        assert sockets
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.postgres
def test_two_data_dirs_on_one_postgresql_database(tmp_path: Path, postgres_url: str) -> None:
    first = Settings(home=tmp_path / "a", port=18083, database_url=postgres_url)
    with ServerLock.acquire(first):
        with pytest.raises(ServerInUse) as refused:
            ServerLock.acquire(Settings(home=tmp_path / "b", database_url=postgres_url))
        assert refused.value.message.startswith("the database postgresql")
        assert f"(pid {os.getpid()}, http://127.0.0.1:18083)" in refused.value.message
        # refused by the database: the second data dir's lock was let go again
        ServerLock.check_free(tmp_path / "b")
    with ServerLock.acquire(Settings(home=tmp_path / "b", database_url=postgres_url)):
        pass
