"""Fixtures shared by every test; fixture modules live in tests/fixtures/."""

from __future__ import annotations

import os

import pytest

pytest_plugins: list[str] = [
    "tests.fixtures.postgres",
    "tests.fixtures.ray",
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.server",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each worker starts with its share of the slow tests.

    ``./scripts/test`` runs the suite with ``--dist worksteal``: the tests are first dealt out
    in contiguous chunks, one a worker, in this order, and a worker that runs out takes queued
    tests from another. A long test that starts last makes everyone wait for it, and slow
    tests all in one chunk would run one after the other; so the slow tests are dealt round
    the chunks, at their heads, the longest first (``@pytest.mark.slow(seconds=N)`` says how
    long a test takes, roughly; the others keep their order after those)."""
    slow = sorted(
        (item for item in items if item.get_closest_marker("slow")), key=_seconds, reverse=True
    )
    fast = [item for item in items if not item.get_closest_marker("slow")]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    ordered: list[pytest.Item] = []
    left = len(items)
    for worker in range(workers):
        size = left // (workers - worker)  # as worksteal deals the first chunks
        left -= size
        heads = slow[worker::workers]
        ordered += heads
        ordered += fast[: max(size - len(heads), 0)]
        del fast[: max(size - len(heads), 0)]
    items[:] = ordered + fast


def _seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("slow")
    return float(marker.kwargs.get("seconds", 0)) if marker is not None else 0.0
