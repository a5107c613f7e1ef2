"""The metadata store's backends: every store test runs on SQLite and on PostgreSQL.

PostgreSQL gets one fresh, uniquely named database per test session, emptied before each test
and dropped at the end. Locally, a missing server skips those tests; with ``CI=true`` it fails
them, because CI has the service and a silent skip would hide a broken store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from shipway.store.metadata import MetadataStore

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USERS = ("postgres", "root")
POSTGRES_ADMIN_DB = "test"


def _admin_url(user: str, database: str = POSTGRES_ADMIN_DB) -> str:
    return f"postgresql://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"


def _connect_admin() -> tuple[psycopg.Connection[tuple[object, ...]], str]:
    problems = []
    for user in POSTGRES_USERS:
        try:
            conn = psycopg.connect(_admin_url(user), autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            problems.append(f"{user}: {exc}".strip())
            continue
        return conn, user
    message = "PostgreSQL is unreachable on {}:{} ({})".format(
        POSTGRES_HOST, POSTGRES_PORT, "; ".join(problems)
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI=true, so this is a failure, not a skip.")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[tuple[str, str]]:
    """A fresh database for this test session: (user, database name); dropped at the end."""
    admin, user = _connect_admin()
    name = f"shipway_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield user, name
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def postgres_url(postgres_database: tuple[str, str]) -> str:
    """The session database, emptied: each test starts from no schema at all."""
    user, name = postgres_database
    with psycopg.connect(_admin_url(user, name), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return f"postgresql+psycopg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLAlchemy URL of an empty database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[MetadataStore]:
    opened = MetadataStore(store_url)
    try:
        yield opened
    finally:
        opened.close()
