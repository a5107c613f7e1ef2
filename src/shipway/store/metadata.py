"""The metadata store: models, endpoint configurations, endpoints, instances, alarms, scaling
(targets, policies, activities), notifications and transform jobs, in SQL.

SQLite in the data dir by default; PostgreSQL (or any SQLAlchemy URL) for scale-out. Opening a
store brings its schema to the newest revision with Alembic, so a data dir written by an older
Shipway still opens.

Names are unique case-insensitively (``name_key`` is the lower-cased name) and kept in their
original case, as SageMaker does. Lists page with an opaque keyset ``NextToken``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shipway.domain.endpoint import Endpoint
from shipway.domain.endpoint_config import EndpointConfig
from shipway.domain.errors import AlreadyExists, ValidationError
from shipway.domain.instance import Instance, InstanceStatus
from shipway.domain.listing import ListInput, SortBy, SortOrder
from shipway.domain.model import Model
from shipway.domain.shape import Shape
from shipway.domain.transform_job import TransformJob
from shipway.store import schema
from shipway.store.alarms import AlarmStore
from shipway.store.notifications import NotificationStore
from shipway.store.scaling import ScalingStore
from shipway.store.transform_plans import TransformPlans

__all__ = [
    "HEAD",
    "Collection",
    "Instances",
    "MetadataStore",
    "current_revision",
    "make_engine",
    "migrate",
]

S = TypeVar("S", bound=Shape)

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0007"
"""The newest migration's revision (a test checks it is alembic's head)."""


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class Collection(Generic[S]):
    """One kind of named resource, stored as JSON documents with indexed columns."""

    def __init__(
        self,
        engine: Engine,
        table: sa.Table,
        shape: type[S],
        name_of: Callable[[S], str],
        columns: Callable[[S], dict[str, Any]],
    ) -> None:
        self._engine = engine
        self._table = table
        self._shape = shape
        self._name_of = name_of
        self._columns = columns

    def _row(self, item: S) -> dict[str, Any]:
        name = self._name_of(item)
        return {
            "name_key": name.lower(),
            "name": name,
            "doc": item.model_dump_json(by_alias=True, exclude_none=True),
            **self._columns(item),
        }

    def _load(self, doc: str) -> S:
        return self._shape.model_validate_json(doc)

    def add(self, item: S, kind: str, arn: str) -> None:
        """Insert ``item``; :class:`AlreadyExists` when its name is taken (in any case)."""
        try:
            with self._engine.begin() as conn:
                conn.execute(self._table.insert().values(**self._row(item)))
        except sa.exc.IntegrityError as exc:
            raise AlreadyExists(kind, self._name_of(item), arn) from exc

    def put(self, item: S, *, expected_status: str | None = None) -> bool:
        """Replace the stored document of an existing ``item``; False if nothing was replaced.

        With ``expected_status``, replace only while the stored status is still that one, so a
        writer never overwrites a status someone else changed in between (compare-and-set).
        """
        row = self._row(item)
        stmt = self._table.update().where(self._table.c.name_key == row["name_key"])
        if expected_status is not None:
            stmt = stmt.where(self._table.c.status == expected_status)
        with self._engine.begin() as conn:
            return bool(conn.execute(stmt.values(**row)).rowcount)

    def update(
        self, name: str, change: Callable[[S], S], *, expected_status: str | None = None
    ) -> S | None:
        """Read, change and write one item in one transaction; None if it is gone (or its
        status is no longer ``expected_status``).

        Writers that each change part of an item (the controller its status, the API its
        tags) never lose each other's change: PostgreSQL locks the row; on SQLite the write
        lock is taken before the read (``BEGIN IMMEDIATE``: the driver would otherwise begin
        only at the write, after a read another writer may already have made stale).
        """
        t = self._table
        key = name.lower()
        sqlite = self._engine.dialect.name == "sqlite"
        for attempt in range(5):
            try:
                with self._engine.begin() as conn:
                    if sqlite:
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                    select = sa.select(t.c.doc).where(t.c.name_key == key)
                    if expected_status is not None:
                        select = select.where(t.c.status == expected_status)
                    doc = conn.execute(select.with_for_update()).scalar_one_or_none()
                    if doc is None:
                        return None
                    changed = change(self._load(doc))
                    conn.execute(t.update().where(t.c.name_key == key).values(**self._row(changed)))
                    return changed
            except sa.exc.OperationalError:
                if attempt == 4 or self._engine.dialect.name != "sqlite":
                    raise
                time.sleep(0.01 * (attempt + 1))
        return None

    def get(self, name: str) -> S | None:
        with self._engine.connect() as conn:
            doc = conn.execute(
                sa.select(self._table.c.doc).where(self._table.c.name_key == name.lower())
            ).scalar_one_or_none()
        return None if doc is None else self._load(doc)

    def remove(self, name: str) -> bool:
        with self._engine.begin() as conn:
            result = conn.execute(
                self._table.delete().where(self._table.c.name_key == name.lower())
            )
        return bool(result.rowcount)

    def all(self) -> list[S]:
        with self._engine.connect() as conn:
            docs = conn.execute(
                sa.select(self._table.c.doc).order_by(self._table.c.creation_time)
            ).scalars()
            return [self._load(doc) for doc in docs]

    def with_status(self, statuses: Iterable[str]) -> list[S]:
        """The items whose status is one of ``statuses`` (oldest first; tables with a status)."""
        t = self._table
        with self._engine.connect() as conn:
            docs = conn.execute(
                sa.select(t.c.doc).where(t.c.status.in_(list(statuses))).order_by(t.c.creation_time)
            ).scalars()
            return [self._load(doc) for doc in docs]

    def page(self, query: ListInput) -> tuple[list[S], str | None]:
        """One page of a List call: filters, sort order and the keyset NextToken."""
        t = self._table
        if query.sort_by is SortBy.STATUS:
            if "status" not in t.c:
                raise ValidationError("SortBy must be Name or CreationTime for this list.")
            sort_col = t.c.status
        elif query.sort_by is SortBy.NAME:
            sort_col = t.c.name_key
        else:
            sort_col = t.c.creation_time
        descending = query.sort_order is SortOrder.DESCENDING
        stmt = sa.select(sort_col, t.c.name_key, t.c.doc)
        if query.name_contains:
            stmt = stmt.where(t.c.name_key.contains(query.name_contains.lower(), autoescape=True))
        if query.creation_time_before is not None:
            stmt = stmt.where(t.c.creation_time < _epoch(query.creation_time_before))
        if query.creation_time_after is not None:
            stmt = stmt.where(t.c.creation_time >= _epoch(query.creation_time_after))
        # the lists of resources with a status (endpoints, transform jobs) filter on it too
        modified_before = getattr(query, "last_modified_time_before", None)
        modified_after = getattr(query, "last_modified_time_after", None)
        status = getattr(query, "status_equals", None)
        if modified_before is not None:
            stmt = stmt.where(t.c.last_modified_time < _epoch(modified_before))
        if modified_after is not None:
            stmt = stmt.where(t.c.last_modified_time >= _epoch(modified_after))
        if status is not None:
            stmt = stmt.where(t.c.status == status.value)
        if query.next_token:
            last_value, last_key = _decode_token(query.next_token, query.sort_by)
            after = sa.tuple_(sort_col, t.c.name_key)
            bound = sa.tuple_(sa.literal(last_value), sa.literal(last_key))
            stmt = stmt.where(after < bound if descending else after > bound)
        order = sa.desc if descending else sa.asc
        stmt = stmt.order_by(order(sort_col), order(t.c.name_key)).limit(query.max_results + 1)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        items = [self._load(row.doc) for row in rows[: query.max_results]]
        token = None
        if len(rows) > query.max_results:
            last = rows[query.max_results - 1]
            token = _encode_token(query.sort_by, last[0], last.name_key)
        return items, token


def _encode_token(sort_by: SortBy, value: Any, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort_by.value, value, key]).encode()).decode()


def _decode_token(token: str, sort_by: SortBy) -> tuple[Any, str]:
    """The keyset a NextToken carries; ValidationError unless this API made it for this sort."""
    invalid = ValidationError(
        f"NextToken '{token[:64]}' is not a token this API returned for SortBy {sort_by.value}."
    )
    try:
        sort, value, key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise invalid from exc
    numeric = sort_by is SortBy.CREATION_TIME
    fits = (
        isinstance(value, int | float) and not isinstance(value, bool)
        if numeric
        else isinstance(value, str)
    )
    if sort != sort_by.value or not fits or not isinstance(key, str):
        raise invalid
    return value, key


class Instances:
    """The actual state of instances, written by the controller, read by routers."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._table = schema.instances

    def put(self, instance: Instance) -> None:
        doc = json.dumps(asdict(instance))
        values = {
            "endpoint_key": instance.endpoint_name.lower(),
            "variant_name": instance.variant_name,
            "status": instance.status.value,
            "address": instance.address,
            "doc": doc,
        }
        with self._engine.begin() as conn:
            updated = conn.execute(
                self._table.update()
                .where(self._table.c.instance_id == instance.instance_id)
                .values(**values)
            ).rowcount
            if not updated:
                conn.execute(
                    self._table.insert().values(instance_id=instance.instance_id, **values)
                )

    def remove(self, instance_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(self._table.delete().where(self._table.c.instance_id == instance_id))

    def for_endpoint(self, endpoint_name: str) -> list[Instance]:
        with self._engine.connect() as conn:
            docs = conn.execute(
                sa.select(self._table.c.doc).where(
                    self._table.c.endpoint_key == endpoint_name.lower()
                )
            ).scalars()
            return [_instance(doc) for doc in docs]

    def all(self) -> list[Instance]:
        with self._engine.connect() as conn:
            return [_instance(doc) for doc in conn.execute(sa.select(self._table.c.doc)).scalars()]


def _instance(doc: str) -> Instance:
    data = json.loads(doc)
    data["status"] = InstanceStatus(data["status"])
    return Instance(**data)


class MetadataStore:
    """The store the service layer writes desired state to and the controller reconciles."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        self.models: Collection[Model] = Collection(
            self.engine,
            schema.models,
            Model,
            lambda m: m.model_name,
            lambda m: {"arn": m.model_arn, "creation_time": _epoch(m.creation_time)},
        )
        self.endpoint_configs: Collection[EndpointConfig] = Collection(
            self.engine,
            schema.endpoint_configs,
            EndpointConfig,
            lambda c: c.endpoint_config_name,
            lambda c: {"arn": c.endpoint_config_arn, "creation_time": _epoch(c.creation_time)},
        )
        self.endpoints: Collection[Endpoint] = Collection(
            self.engine,
            schema.endpoints,
            Endpoint,
            lambda e: e.endpoint_name,
            lambda e: {
                "arn": e.endpoint_arn,
                "creation_time": _epoch(e.creation_time),
                "last_modified_time": _epoch(e.last_modified_time),
                "status": e.endpoint_status.value,
            },
        )
        self.transform_jobs: Collection[TransformJob] = Collection(
            self.engine,
            schema.transform_jobs,
            TransformJob,
            lambda j: j.transform_job_name,
            lambda j: {
                "arn": j.transform_job_arn,
                "creation_time": _epoch(j.creation_time),
                "last_modified_time": _epoch(j.last_modified_time),
                "status": j.transform_job_status.value,
            },
        )
        self.transform_plans = TransformPlans(self.engine)
        self.instances = Instances(self.engine)
        self.alarms = AlarmStore(self.engine)
        self.scaling = ScalingStore(self.engine)
        self.notifications = NotificationStore(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def current_revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    version: str | None = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return version


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default).

    A database already at the newest revision (every start but the first after an upgrade) is
    left without importing alembic, which a running server would otherwise hold in memory
    (about 10 MB) for nothing."""
    with engine.begin() as conn:
        if revision == "head" and current_revision(conn) == HEAD:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
