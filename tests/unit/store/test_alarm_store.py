"""Alarms and their history in the metadata store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from shipway.domain.alarm import (
    AlarmHistoryItem,
    AlarmState,
    HistoryItemType,
    MetricAlarm,
)
from shipway.domain.model import Tag
from shipway.store.alarms import AlarmChange, HistoryQuery
from shipway.store.metadata import MetadataStore

START = datetime(2026, 1, 1, tzinfo=UTC)


def make_alarm(
    name: str,
    state: AlarmState = AlarmState.INSUFFICIENT_DATA,
    *,
    metric: str = "Invocation5XXErrors",
    actions: list[str] | None = None,
) -> MetricAlarm:
    return MetricAlarm(
        alarm_name=name,
        alarm_arn=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
        alarm_configuration_updated_timestamp=START,
        state_value=state,
        state_updated_timestamp=START,
        state_transitioned_timestamp=START,
        metric_name=metric,
        namespace="AWS/SageMaker",
        statistic="Sum",
        period=60,
        evaluation_periods=1,
        threshold=1.0,
        comparison_operator="GreaterThanOrEqualToThreshold",
        alarm_actions=actions or [],
    )


def item(
    name: str, seconds: float, kind: HistoryItemType = HistoryItemType.STATE_UPDATE
) -> AlarmHistoryItem:
    return AlarmHistoryItem(
        alarm_name=name,
        timestamp=START + timedelta(seconds=seconds),
        history_item_type=kind,
        history_summary=f"item at {float(seconds)}",
        history_data="{}",
    )


def create(store: MetadataStore, alarm: MetricAlarm, *history: AlarmHistoryItem) -> None:
    store.alarms.upsert(alarm.alarm_name, lambda current: AlarmChange(alarm, history))


def test_create_replace_get_and_case_sensitive_names(store: MetadataStore) -> None:
    alarms = store.alarms
    seen: list[MetricAlarm | None] = []

    def change(current: MetricAlarm | None) -> AlarmChange:
        seen.append(current)
        return AlarmChange(make_alarm("Errors"), tags=[Tag(key="team", value="ml")])

    alarms.upsert("Errors", change)
    create(store, make_alarm("errors", AlarmState.OK))  # another alarm: names are case-sensitive
    alarms.upsert("Errors", change)
    assert seen == [None, make_alarm("Errors")]
    assert alarms.get("Errors") == make_alarm("Errors")
    assert alarms.get("errors") == make_alarm("errors", AlarmState.OK)
    assert alarms.get("ERRORS") is None
    assert alarms.tags("Errors") == [Tag(key="team", value="ml")]
    assert alarms.tags("errors") == []
    assert alarms.tags("nope") is None
    assert [a.alarm_name for a in alarms.all()] == ["Errors", "errors"]
    assert alarms.states(["errors", "Errors", "nope"]) == {
        "errors": AlarmState.OK,
        "Errors": AlarmState.INSUFFICIENT_DATA,
    }


def test_page_filters_and_keyset(store: MetadataStore) -> None:
    for name in ["b-2", "a-1", "b-1", "c_%", "b-3"]:
        create(
            store,
            make_alarm(
                name,
                AlarmState.ALARM if name.startswith("b") else AlarmState.OK,
                actions=["arn:aws:sns:x"] if name != "b-2" else [],
            ),
        )
    alarms = store.alarms
    page, more = alarms.page(limit=2)
    assert [a.alarm_name for a in page] == ["a-1", "b-1"]
    assert more
    page, more = alarms.page(limit=2, after="b-1")
    assert [a.alarm_name for a in page] == ["b-2", "b-3"]
    assert more
    page, more = alarms.page(limit=2, after="b-3")
    assert [a.alarm_name for a in page] == ["c_%"]
    assert not more
    assert [a.alarm_name for a in alarms.page(prefix="b-")[0]] == ["b-1", "b-2", "b-3"]
    assert [a.alarm_name for a in alarms.page(prefix="c_")[0]] == ["c_%"]
    assert alarms.page(prefix="c%")[0] == []  # the prefix is literal
    assert [a.alarm_name for a in alarms.page(state=AlarmState.OK)[0]] == ["a-1", "c_%"]
    assert [a.alarm_name for a in alarms.page(names=["b-3", "a-1", "zz"])[0]] == ["a-1", "b-3"]
    with_actions, more = alarms.page(
        state=AlarmState.ALARM, keep=lambda a: bool(a.alarm_actions), limit=1
    )
    assert [a.alarm_name for a in with_actions] == ["b-1"]
    assert more
    assert alarms.page(metric_name="Invocations")[0] == []


def test_update_reads_changes_and_writes_in_one_transaction(store: MetadataStore) -> None:
    create(store, make_alarm("a"))
    alarms = store.alarms
    written = alarms.update(
        "a",
        lambda current: AlarmChange(
            current.model_copy(update={"state_value": AlarmState.ALARM}), [item("a", 1)]
        ),
    )
    assert written is not None
    assert written.state_value is AlarmState.ALARM
    assert alarms.states(["a"]) == {"a": AlarmState.ALARM}
    assert alarms.update("a", lambda current: None) is None  # nothing to write
    assert alarms.update("gone", lambda current: AlarmChange(current)) is None
    history, _ = alarms.history(HistoryQuery(alarm_name="a"))
    assert [h.history_summary for h in history] == ["item at 1.0"]


def test_concurrent_updates_lose_nothing(store: MetadataStore) -> None:
    create(store, make_alarm("counter"))
    alarms = store.alarms

    def bump(current: MetricAlarm) -> AlarmChange:
        return AlarmChange(current.model_copy(update={"threshold": current.threshold + 1}))

    def worker() -> None:
        for _ in range(10):
            alarms.update("counter", bump)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = alarms.get("counter")
    assert stored is not None
    assert stored.threshold == 41.0


def test_history_order_filters_paging_and_cap(store: MetadataStore) -> None:
    alarms = store.alarms
    alarms.history_limit = 5
    create(
        store,
        make_alarm("a"),
        item("a", 0, HistoryItemType.CONFIGURATION_UPDATE),
        *[item("a", s) for s in range(1, 8)],
    )
    create(store, make_alarm("b"), item("b", 100))
    newest, more = alarms.history(HistoryQuery(alarm_name="a", limit=3))
    assert [h.history_summary for h in newest] == ["item at 7.0", "item at 6.0", "item at 5.0"]
    assert more is not None
    rest, more = alarms.history(HistoryQuery(alarm_name="a", limit=3, after_id=more))
    assert [h.history_summary for h in rest] == ["item at 4.0", "item at 3.0"]  # capped at 5
    assert more is None
    oldest, _ = alarms.history(HistoryQuery(alarm_name="a", ascending=True, limit=2))
    assert [h.history_summary for h in oldest] == ["item at 3.0", "item at 4.0"]
    window, _ = alarms.history(
        HistoryQuery(start=START + timedelta(seconds=4), end=START + timedelta(seconds=100))
    )
    assert [h.alarm_name for h in window] == ["b", "a", "a", "a", "a"]
    configs, _ = alarms.history(HistoryQuery(item_type=HistoryItemType.CONFIGURATION_UPDATE))
    assert configs == []  # the creation item was the oldest, past the cap


def test_remove_is_all_or_nothing_and_takes_the_history(store: MetadataStore) -> None:
    alarms = store.alarms
    create(store, make_alarm("a"), item("a", 1))
    create(store, make_alarm("b"), item("b", 2))
    assert alarms.remove(["a", "nope", "b", "nope"]) == ["nope"]
    assert sorted(alarms.states(["a", "b"])) == ["a", "b"]
    assert alarms.remove(["a", "b"]) == []
    assert alarms.all() == []
    assert alarms.history(HistoryQuery()) == ([], None)


@pytest.mark.parametrize("count", [0, 1])
def test_get_many(store: MetadataStore, count: int) -> None:
    names = ["x", "y"][:count]
    for name in names:
        create(store, make_alarm(name))
    assert sorted(store.alarms.get_many([*names, "missing"])) == names
