"""Giving back read-only file pages: the kernel reclaims them, and they read back the same."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from shipway.compute import pages
from shipway.compute.pages import release_read_only_file_pages

PAGE = mmap.PAGESIZE


def resident_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total = 0
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
            inside = len(fields) >= 6 and fields[5] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


def test_a_read_only_mapping_read_once_is_given_back_and_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "library.bin"
    data = os.urandom(256 * PAGE)
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())  # clean in the page cache, as an installed library is
    with path.open("rb") as file:
        mapped = mmap.mmap(file.fileno(), len(data), prot=mmap.PROT_READ)
    try:
        assert sum(mapped[i] for i in range(0, len(data), PAGE)) >= 0  # touch every page
        assert resident_kib(path) >= 256 * PAGE // 1024 * 0.9

        assert release_read_only_file_pages() > 0

        assert resident_kib(path) < 256 * PAGE // 1024 * 0.1
        assert mapped[:] == data  # read back from the file
    finally:
        mapped.close()


def test_writable_mappings_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(bytes(64 * PAGE))
    with path.open("r+b") as file:
        mapped = mmap.mmap(file.fileno(), 64 * PAGE)  # shared, writable
    try:
        mapped[:5] = b"dirty"
        before = resident_kib(path)
        release_read_only_file_pages()
        assert resident_kib(path) == before
        assert mapped[:5] == b"dirty"
    finally:
        mapped.close()


def test_exports() -> None:
    assert pages.__all__ == ["release_read_only_file_pages"]
