"""Read-change-write transactions of the metadata store, on SQLite and PostgreSQL alike.

SQLite's driver begins a transaction only at its first write, after the read: two
read-change-writes could then both read the old row and the second overwrite the first. A
write transaction here takes SQLite's write lock before anything is read (``BEGIN
IMMEDIATE``); PostgreSQL's rows are locked by the caller's ``SELECT ... FOR UPDATE``.

:func:`retried` runs one a few times when another writer got there first (SQLite's lock
timeout) or a concurrent insert took the same key (either database), which the next attempt
then reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = ["ATTEMPTS", "retried", "writing"]

T = TypeVar("T")

ATTEMPTS = 5


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its start (SQLite), committed on exit."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def retried(engine: Engine, run: Callable[[Connection], T]) -> T:
    """``run`` in a :func:`writing` transaction, tried again (up to :data:`ATTEMPTS` times)
    after a lock timeout or a concurrent insert of the same key; the last error is raised."""
    for attempt in range(ATTEMPTS):
        try:
            with writing(engine) as conn:
                return run(conn)
        except (sa.exc.OperationalError, sa.exc.IntegrityError):
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")
