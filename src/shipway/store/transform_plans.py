"""The stored plans of transform jobs: each job's input objects and shards, and their progress.

Written by the batch runner only (one server runs a job): the plan once, when the job starts;
then a shard's completion, and an object's, one small transaction each. A job resumed after a
restart reads back what was completed and runs the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shipway.domain.transform_plan import InputObject, ObjectStatus, Shard, ShardStatus
from shipway.store import schema
from shipway.store.transactions import writing

__all__ = ["TransformPlans"]


class TransformPlans:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._objects = schema.transform_objects
        self._shards = schema.transform_shards

    def save(self, job_name: str, objects: Sequence[InputObject], shards: Sequence[Shard]) -> None:
        """Store a job's plan (replacing any earlier one), in one transaction."""
        key = job_name.lower()
        with writing(self._engine) as conn:
            conn.execute(self._objects.delete().where(self._objects.c.job_key == key))
            conn.execute(self._shards.delete().where(self._shards.c.job_key == key))
            for start in range(0, len(objects), 1000):
                conn.execute(
                    self._objects.insert(),
                    [
                        {
                            "job_key": key,
                            "object_index": o.index,
                            "url": o.url,
                            "key": o.key,
                            "size": o.size,
                            "status": o.status.value,
                            "failure": o.failure,
                        }
                        for o in objects[start : start + 1000]
                    ],
                )
            for start in range(0, len(shards), 1000):
                conn.execute(
                    self._shards.insert(),
                    [
                        {
                            "job_key": key,
                            "shard_index": s.index,
                            "object_index": s.object_index,
                            "start": s.start,
                            "end": s.end,
                            "status": s.status.value,
                            "records": s.records,
                            "part_size": s.part_size,
                        }
                        for s in shards[start : start + 1000]
                    ],
                )

    def objects(self, job_name: str) -> list[InputObject]:
        t = self._objects
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(t).where(t.c.job_key == job_name.lower()).order_by(t.c.object_index)
            ).all()
        return [
            InputObject(
                index=r.object_index,
                url=r.url,
                key=r.key,
                size=r.size,
                status=ObjectStatus(r.status),
                failure=r.failure,
            )
            for r in rows
        ]

    def shards(self, job_name: str) -> list[Shard]:
        t = self._shards
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(t).where(t.c.job_key == job_name.lower()).order_by(t.c.shard_index)
            ).all()
        return [
            Shard(
                index=r.shard_index,
                object_index=r.object_index,
                start=r.start,
                end=r.end,
                status=ShardStatus(r.status),
                records=r.records,
                part_size=r.part_size,
            )
            for r in rows
        ]

    def shard_completed(self, job_name: str, index: int, records: int, part_size: int) -> None:
        t = self._shards
        with writing(self._engine) as conn:
            conn.execute(
                t.update()
                .where(t.c.job_key == job_name.lower(), t.c.shard_index == index)
                .values(status=ShardStatus.COMPLETED.value, records=records, part_size=part_size)
            )

    def reset_shards(self, job_name: str, indexes: Sequence[int]) -> None:
        """Mark shards to run again (their part files were lost)."""
        if not indexes:
            return
        t = self._shards
        with writing(self._engine) as conn:
            conn.execute(
                t.update()
                .where(t.c.job_key == job_name.lower(), t.c.shard_index.in_(list(indexes)))
                .values(status=ShardStatus.PENDING.value, records=0, part_size=0)
            )

    def object_finished(
        self, job_name: str, index: int, status: ObjectStatus, failure: str | None = None
    ) -> None:
        t = self._objects
        with writing(self._engine) as conn:
            conn.execute(
                t.update()
                .where(t.c.job_key == job_name.lower(), t.c.object_index == index)
                .values(status=status.value, failure=failure)
            )

    def remove(self, job_name: str) -> None:
        key = job_name.lower()
        with writing(self._engine) as conn:
            conn.execute(self._objects.delete().where(self._objects.c.job_key == key))
            conn.execute(self._shards.delete().where(self._shards.c.job_key == key))
