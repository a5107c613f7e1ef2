"""The server lock: one ``shipway server`` per data dir (and per PostgreSQL database).

Two servers over one data dir would each believe the other's instances were left by a crashed
run and stop them, and both would reconcile the same endpoints into two fleets. So a server
takes this lock before it touches anything (instance cleanup, migrations, scratch folders) and
holds it for its lifetime; a second server is refused with one line saying who holds it.

- **The data dir:** ``flock`` on ``<home>/server.lock``. The kernel releases it when the holder
  dies, however it dies, so a killed server never blocks the next start; the holder writes its
  pid, URL and start time into the file so a refusal can name it.
- **The database, when it is PostgreSQL:** two data dirs may name the same database, so the
  server also holds a session-level advisory lock on a fixed key, on a connection of its own
  (PostgreSQL releases it when that connection ends, with its process). Several servers on one
  database (scale-out) are not supported yet: until they are, refuse, never corrupt.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from shipway.domain.errors import ShipwayError
from shipway.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["DatabaseUnreachable", "Holder", "ServerInUse", "ServerLock"]

LOCK_FILE = "server.lock"
ADVISORY_KEY = int.from_bytes(b"SHIPWAY\0", "big")
"""The PostgreSQL advisory lock every Shipway server takes on its database."""


class ServerInUse(ShipwayError):
    """The data dir or the database is held by another running Shipway server."""

    code = "ServerInUse"


class DatabaseUnreachable(ShipwayError):
    """The PostgreSQL database cannot be connected to, so its lock cannot be taken."""

    code = "DatabaseUnreachable"


@dataclass(frozen=True)
class Holder:
    """The server holding the lock, as it described itself."""

    pid: int
    url: str
    started: str = ""
    host: str = ""

    def describe(self) -> str:
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"pid {self.pid}{where}, {self.url}"

    def to_text(self) -> str:
        return json.dumps(
            {"pid": self.pid, "url": self.url, "started": self.started, "host": self.host}
        )

    @classmethod
    def from_text(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(
                int(data["pid"]),
                str(data["url"]),
                str(data.get("started", "")),
                str(data.get("host", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None  # written by a server starting this very moment, or not at all


class ServerLock:
    """Held from :meth:`acquire` to :meth:`release` (or the process's end)."""

    def __init__(self, settings: Settings, fd: int, database: _DatabaseLock | None) -> None:
        self.settings = settings
        self._fd: int | None = fd
        self._database = database

    @classmethod
    def acquire(cls, settings: Settings) -> ServerLock:
        """Take the data dir's lock, then the database's; :class:`ServerInUse` if either is
        held. Creates the data dir (and the lock file) if need be, and nothing else."""
        home = settings.home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.from_text(_read(fd))
            os.close(fd)
            raise ServerInUse(_in_use(str(home), holder, "stop it or use --home")) from None
        except BaseException:
            os.close(fd)
            raise
        me = Holder(
            os.getpid(),
            f"http://{settings.host}:{settings.port}",
            datetime.now(UTC).isoformat(timespec="seconds"),
            socket.gethostname(),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.to_text().encode() + b"\n", 0)
        try:
            database = _DatabaseLock.acquire(settings.metadata_url, me)
        except BaseException:
            _unlock(fd)
            raise
        return cls(settings, fd, database)

    @staticmethod
    def check_free(home: Path) -> None:
        """:class:`ServerInUse` if a server holds this data dir now; creates nothing."""
        try:
            fd = os.open(home / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return  # no lock file: no server has run here
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.from_text(_read(fd))
            raise ServerInUse(_in_use(str(home), holder, "stop it or use --home")) from None
        finally:
            os.close(fd)  # and with it the shared lock, if it was taken

    @property
    def held(self) -> bool:
        return self._fd is not None

    def ensure_held(self) -> None:
        """For what only the lock's holder may do (ending a previous run's instances)."""
        if self._fd is None:
            raise RuntimeError(f"the server lock on {self.settings.home} is not held")

    def release(self) -> None:
        """Let the next server start; idempotent."""
        if self._database is not None:
            self._database.release()
            self._database = None
        if self._fd is not None:
            _unlock(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class _DatabaseLock:
    """PostgreSQL's session advisory lock on :data:`ADVISORY_KEY`, on a connection of its own."""

    def __init__(self, engine: Engine, connection: Connection) -> None:
        self._engine = engine
        self._connection = connection

    @classmethod
    def acquire(cls, url: str, me: Holder) -> _DatabaseLock | None:
        """None for a database that is not PostgreSQL (SQLite lives in the data dir)."""
        import sqlalchemy as sa

        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() != "postgresql":
            return None
        engine = sa.create_engine(
            parsed,
            poolclass=sa.NullPool,
            # how another server's refusal names this one (pg_stat_activity, at most 63 bytes)
            connect_args={"application_name": f"shipway {me.pid} {me.url}"[:63]},
        )
        try:
            connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseUnreachable(
                f"cannot reach the database {parsed.render_as_string(hide_password=True)}: {reason}"
            ) from None
        taken = connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}
        ).scalar()
        if taken:
            return cls(engine, connection)
        holder = connection.execute(
            sa.text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = :key"
            ),
            {"key": ADVISORY_KEY},
        ).scalar()
        connection.close()
        engine.dispose()
        raise ServerInUse(
            _in_use(
                f"the database {parsed.render_as_string(hide_password=True)}",
                _holder_from_application_name(holder),
                "stop it (several servers on one database are not supported yet)",
            )
        )

    def release(self) -> None:
        with contextlib.suppress(Exception):  # a lost connection has released the lock already
            self._connection.close()
        self._engine.dispose()


def _holder_from_application_name(name: object) -> Holder | None:
    parts = str(name or "").split(" ")
    if len(parts) == 3 and parts[0] == "shipway" and parts[1].isdigit():
        return Holder(int(parts[1]), parts[2])
    return None


def _in_use(what: str, holder: Holder | None, advice: str) -> str:
    who = f" ({holder.describe()})" if holder is not None and holder.pid else ""
    return f"{what} is in use by another Shipway server{who}; {advice}"


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace")


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # no stale holder for the next reader
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
