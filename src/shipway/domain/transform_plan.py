"""A transform job's plan: its input objects and the shards they are cut into.

A shard is the unit of work and of progress: a byte range of one object (a whole object when it
cannot be cut: compressed, binary-framed, or not split into records). The plan is made once,
when the job starts, and stored; a job resumed after a restart runs only the shards not yet
completed, in the same order, so its outputs are the same bytes as an uninterrupted run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["InputObject", "ObjectStatus", "Shard", "ShardStatus"]


class ObjectStatus(StrEnum):
    PENDING = "Pending"
    COMPLETED = "Completed"
    """Its output is written."""
    FAILED = "Failed"
    """A record failed: it has no output."""


class ShardStatus(StrEnum):
    PENDING = "Pending"
    COMPLETED = "Completed"
    """Its part of the output is on disk (``part_size`` bytes)."""


@dataclass(frozen=True)
class InputObject:
    index: int
    url: str
    key: str
    """Its key relative to the input prefix (``sub/data.csv``): the output is ``<key>.out``."""
    size: int
    status: ObjectStatus = ObjectStatus.PENDING
    failure: str | None = None


@dataclass(frozen=True)
class Shard:
    index: int
    object_index: int
    start: int
    end: int | None
    """Bytes ``[start, end)`` of the object; ``None``: to its end."""
    status: ShardStatus = ShardStatus.PENDING
    records: int = 0
    part_size: int = 0
    """Bytes of output it wrote (its part file's size once completed)."""

    @property
    def size(self) -> int | None:
        return None if self.end is None else self.end - self.start
