"""Bringing a metadata database's schema to its newest revision in a process of its own.

``shipway server`` does so before it opens its store when the schema is behind (a new data dir,
or a Shipway upgrade): alembic (about 12 MB with its templates) then never stays loaded in the
long-running server. The database's URL reaches the child in its environment, not its command
line, where other local users could read a password. Should the child fail, the store migrates
in-process when it opens, and says why the way it always does.
"""

from __future__ import annotations

import os
import subprocess
import sys

from shipway.store.metadata import HEAD, current_revision, make_engine, migrate

__all__ = ["upgrade_apart"]

_URL_VARIABLE = "SHIPWAY_UPGRADE_DATABASE_URL"


def upgrade_apart(url: str) -> None:
    """Migrate the database at ``url`` to the newest revision in a child process, unless it
    is there already."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if current_revision(conn) == HEAD:
                return
    except Exception:  # unreachable, say: the store's own opening reports it
        return
    finally:
        engine.dispose()
    subprocess.run(
        [sys.executable, "-m", "shipway.store.upgrade"],
        env={**os.environ, _URL_VARIABLE: url},
        check=False,
    )


def main() -> None:
    engine = make_engine(os.environ[_URL_VARIABLE])
    try:
        migrate(engine)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
