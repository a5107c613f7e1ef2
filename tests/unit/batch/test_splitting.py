"""Cutting shards into request bodies: every record once, in order, however the shards fall."""

from __future__ import annotations

import io

import pytest

from shipway.batch.framing import write_recordio
from shipway.batch.splitting import Payload, RecordTooLarge, payloads
from shipway.domain.transform_job import BatchStrategy, SplitType

LINES = b"".join(b"%d,%s\n" % (i, b"x" * (i % 17)) for i in range(500))


def cut(
    data: bytes,
    start: int = 0,
    end: int | None = None,
    *,
    split: SplitType = SplitType.LINE,
    strategy: BatchStrategy = BatchStrategy.MULTI_RECORD,
    limit: int | None = 1000,
) -> list[Payload]:
    return list(
        payloads(
            io.BytesIO(data), start=start, end=end, split=split, strategy=strategy, limit=limit
        )
    )


def records(pieces: list[Payload]) -> list[bytes]:
    return [record for piece in pieces for record in piece.records()]


@pytest.mark.parametrize("shard", [1, 7, 64, 333, 1000, 4096])
@pytest.mark.parametrize("strategy", list(BatchStrategy))
def test_shards_own_each_record_once_wherever_they_are_cut(
    shard: int, strategy: BatchStrategy
) -> None:
    seen: list[bytes] = []
    for start in range(0, len(LINES), shard):
        end = start + shard if start + shard < len(LINES) else None
        pieces = cut(LINES, start, end, strategy=strategy)
        assert all(len(p.body) <= 1000 for p in pieces)
        assert [p.count for p in pieces] == [len(p.records()) for p in pieces]
        seen += records(pieces)
    assert seen == LINES.splitlines()


def test_multi_record_bodies_are_whole_lines_under_the_limit() -> None:
    pieces = cut(LINES)
    assert b"".join(p.body for p in pieces) == LINES
    assert all(p.body.endswith(b"\n") for p in pieces)
    assert [p.first for p in pieces] == [
        sum(q.count for q in pieces[:i]) for i in range(len(pieces))
    ]


def test_blank_lines_are_not_records_and_the_last_line_needs_no_newline() -> None:
    data = b"\n1,2\n\n\r\n3,4\n5,6"
    assert records(cut(data)) == [b"1,2", b"3,4", b"5,6"]
    assert [p.body for p in cut(data, strategy=BatchStrategy.SINGLE_RECORD)] == [
        b"1,2",
        b"3,4",
        b"5,6",
    ]


def test_a_record_over_the_limit_is_named() -> None:
    data = b"1,2\n" + b"9" * 2000 + b"\n3,4\n"
    for strategy in BatchStrategy:
        with pytest.raises(RecordTooLarge, match="record 2 is larger") as caught:
            cut(data, strategy=strategy)
        assert caught.value.record == 1


def test_split_none_is_the_whole_object_and_refuses_one_over_the_limit() -> None:
    assert [p.body for p in cut(LINES, split=SplitType.NONE, limit=None)] == [LINES]
    with pytest.raises(RecordTooLarge, match="SplitType is None"):
        cut(LINES, split=SplitType.NONE, limit=1000)


def test_recordio_multi_record_packs_frames_and_single_record_strips_them() -> None:
    data = [b"a" * n for n in (3, 10, 400, 1, 700)]
    framed = write_recordio(data, split_at_magic=False)
    packed = cut(framed, split=SplitType.RECORD_IO)
    assert b"".join(p.body for p in packed) == framed
    assert sum(p.count for p in packed) == 5
    single = cut(framed, split=SplitType.RECORD_IO, strategy=BatchStrategy.SINGLE_RECORD)
    assert [p.body for p in single] == data
