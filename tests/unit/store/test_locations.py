"""Atomic writes of answers: nothing under the name until committed, nothing left behind by a
writer that died when the same request is written again."""

from __future__ import annotations

from pathlib import Path

from shipway.store.locations import Locations
from shipway.store.sources import SourcePolicy


def test_an_object_appears_only_when_committed(tmp_path: Path) -> None:
    locations = Locations(SourcePolicy())
    target = tmp_path / "out" / "answer.out"
    writer = locations.writer(str(target), key="request-1")
    writer.write(b"first half, ")
    assert not target.exists()
    writer.finish(b"second half")
    assert target.read_bytes() == b"first half, second half"
    assert sorted(p.name for p in target.parent.iterdir()) == ["answer.out"]


def test_a_rerun_of_a_killed_writing_leaves_no_partial_file(tmp_path: Path) -> None:
    locations = Locations(SourcePolicy())
    target = tmp_path / "answer.out"
    killed = locations.writer(str(target), key="request-1")
    killed.write(b"a partial answer that was never committed " * 100)
    killed._handle.flush()  # the process dies here: its hidden file stays on disk
    assert len(list(tmp_path.iterdir())) == 1

    locations.put(str(target), b"the whole answer", key="request-1")
    assert target.read_bytes() == b"the whole answer"
    assert [p.name for p in tmp_path.iterdir()] == ["answer.out"]


def test_a_discarded_writing_leaves_nothing(tmp_path: Path) -> None:
    locations = Locations(SourcePolicy())
    target = tmp_path / "answer.out"
    writer = locations.writer(str(target))
    writer.write(b"half")
    writer.discard()
    assert list(tmp_path.iterdir()) == []
