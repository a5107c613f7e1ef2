"""The safe extractor against real archives: what it unpacks, the published tarfile attacks
(each archive built the way its write-up describes), its limits, and a fuzzer that throws
random member lists at it."""

from __future__ import annotations

import io
import os
import stat
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipway.store.archive import ArchiveLimits, ArtifactError, extract

LIMITS = ArchiveLimits(max_bytes=64 * 1024 * 1024, max_files=10_000, min_free_bytes=0)


@dataclass
class Member:
    """One archive member to write: a file (body), directory, symlink, hardlink or other type."""

    name: str
    kind: bytes = tarfile.REGTYPE
    body: bytes = b""
    link: str = ""
    mode: int = 0o644


def file(name: str, body: bytes = b"x", mode: int = 0o644) -> Member:
    return Member(name, tarfile.REGTYPE, body, mode=mode)


def folder(name: str, mode: int = 0o755) -> Member:
    return Member(name, tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Member:
    return Member(name, tarfile.SYMTYPE, link=target)


def hardlink(name: str, target: str) -> Member:
    return Member(name, tarfile.LNKTYPE, link=target)


def build(path: Path, members: list[Member], *, compress: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if compress else "w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.mode = member.mode
            info.linkname = member.link
            info.size = len(member.body) if member.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(member.body) if info.size else None)
    return path


@dataclass
class Sandbox:
    """``root/dest`` to extract into, beside ``root/outside`` (a sentinel folder that must stay
    as it is) and ``root/archive.tar.gz``."""

    root: Path

    @property
    def dest(self) -> Path:
        return self.root / "dest"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def archive(self) -> Path:
        return self.root / "archive.tar.gz"

    def extract(self, members: list[Member], limits: ArchiveLimits = LIMITS) -> Path:
        build(self.archive, members)
        extract(self.archive, self.dest, limits, name="model.tar.gz", url=str(self.archive))
        return self.dest

    def refused(self, members: list[Member], entry: str, limits: ArchiveLimits = LIMITS) -> str:
        with pytest.raises(ArtifactError) as caught:
            self.extract(members, limits)
        assert f"model.tar.gz entry {entry!r}" in caught.value.message
        self.assert_contained()
        return caught.value.message

    def assert_contained(self) -> None:
        """Nothing outside ``dest`` changed; every path in it, links resolved, stays in it."""
        assert sorted(p.name for p in self.outside.iterdir()) == ["flag"]
        assert (self.outside / "flag").read_bytes() == b"flag"
        assert stat.S_IMODE((self.outside / "flag").stat().st_mode) == 0o600
        assert stat.S_IMODE(self.outside.stat().st_mode) == 0o700
        assert sorted(p.name for p in self.root.iterdir()) == ["archive.tar.gz", "dest", "outside"]
        inside = os.path.realpath(self.dest)
        for top, dirs, files in os.walk(self.dest, followlinks=False):
            for name in dirs + files:
                path = os.path.join(top, name)
                os.lstat(path)
                real = os.path.realpath(path)
                assert real == inside or real.startswith(inside + os.sep), (path, real)


def make_sandbox(root: Path) -> Sandbox:
    box = Sandbox(root)
    box.dest.mkdir()
    box.outside.mkdir(mode=0o700)
    box.outside.chmod(0o700)
    (box.outside / "flag").write_bytes(b"flag")
    (box.outside / "flag").chmod(0o600)
    return box


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return make_sandbox(tmp_path)


def tree(folder: Path) -> dict[str, str]:
    """Every path below ``folder``: file contents, ``-> target`` for links, ``/`` for folders."""
    found: dict[str, str] = {}
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(top, name)
            key = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[key] = "/"
            else:
                found[key] = path.read_text()
    return found


# -- what it unpacks ----------------------------------------------------------------------------


def test_files_folders_and_inside_links_are_unpacked(box: Sandbox) -> None:
    dest = box.extract(
        [
            folder("./"),
            folder("./code"),
            file("./code/inference.py", b"def model_fn(d): ..."),
            file("model.joblib", b"weights"),
            file("deep/er/still.txt", b"deep"),  # folders not in the archive are made
            symlink("latest", "model.joblib"),
            symlink("code/model", "../model.joblib"),
            symlink("deep/er/up", "../.."),
            hardlink("copy.joblib", "model.joblib"),
        ]
    )
    assert tree(dest) == {
        "code": "/",
        "code/inference.py": "def model_fn(d): ...",
        "code/model": "-> ../model.joblib",
        "model.joblib": "weights",
        "deep": "/",
        "deep/er": "/",
        "deep/er/still.txt": "deep",
        "deep/er/up": "-> ../..",
        "latest": "-> model.joblib",
        "copy.joblib": "weights",
    }
    assert (dest / "code" / "model").read_text() == "weights"
    copy = dest / "copy.joblib"
    assert copy.stat().st_ino != (dest / "model.joblib").stat().st_ino  # a copy, not a link
    box.assert_contained()


def test_modes_are_normalised(box: Sandbox) -> None:
    """CVE-2024-12718 changed modes with filter="tar"; here the archive's modes never count
    beyond one execute bit: no setuid, setgid, sticky or world-writable bits."""
    old = os.umask(0o077)  # the umask plays no part either
    try:
        dest = box.extract(
            [
                folder("bin", mode=0o7777),
                file("bin/serve", b"#!/bin/sh", mode=0o6777),
                file("bin/data", b"d", mode=0o4666),
                file("plain", b"p", mode=0o000),
                file("group-exec", b"g", mode=0o610),
            ]
        )
    finally:
        os.umask(old)

    def mode(name: str) -> int:
        return stat.S_IMODE((dest / name).stat().st_mode)

    assert mode("bin") == 0o755
    assert mode("bin/serve") == 0o755
    assert mode("bin/data") == 0o644
    assert mode("plain") == 0o644
    assert mode("group-exec") == 0o755
    assert (dest / "plain").stat().st_uid == os.getuid()


@pytest.mark.parametrize(
    ("members", "entry", "reason"),
    [
        ([file("a"), file("a")], "a", "appears twice"),
        ([folder("a"), file("a")], "a", "appears twice"),
        ([file("a"), folder("a")], "a", "is a directory where"),
        ([file("a"), file("a/b")], "a/b", "goes through the file 'a'"),
        ([symlink("s", "d"), folder("d"), file("s/x")], "s/x", "goes through the symlink 's'"),
        ([file("d/x"), symlink("d", ".")], "d", "appears twice"),
        ([symlink("a", "b"), symlink("b", "a")], "a", "loop of symlinks"),
        ([symlink("s", "f"), file("f"), hardlink("h", "s")], "h", "not an earlier regular"),
        ([hardlink("h", "later"), file("later")], "h", "not an earlier regular"),
        ([hardlink("h", "h")], "h", "not an earlier regular"),
        ([Member("fifo", tarfile.FIFOTYPE)], "fifo", "device or fifo"),
        ([Member("tty", tarfile.CHRTYPE)], "tty", "device or fifo"),
        ([Member("sda", tarfile.BLKTYPE)], "sda", "device or fifo"),
        ([Member("odd", b"Z")], "odd", "unknown type"),
        ([file(".")], ".", "names the model folder itself"),
        ([symlink("empty", "")], "empty", "empty or invalid target"),
        ([file("a/" * 65 + "f")], "a/" * 65 + "f", "more than 64 folders deep"),
        ([file("n" * 4097)], "n" * 4097, "longer than 4096 bytes"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
def test_unsafe_or_ambiguous_members_are_refused(
    box: Sandbox, members: list[Member], entry: str, reason: str
) -> None:
    assert reason in box.refused(members, entry)


def test_a_nul_byte_in_a_name_is_refused(box: Sandbox) -> None:
    """A PAX header can carry a NUL byte that a plain header would cut."""
    with tarfile.open(box.archive, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("model.joblib")
        info.pax_headers = {"path": "model\0.joblib"}
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArtifactError, match="has a NUL byte in its path"):
        extract(box.archive, box.dest, LIMITS, name="model.tar.gz", url="u")
    assert tree(box.dest) == {}


def test_a_sparse_member_is_refused(box: Sandbox) -> None:
    with tarfile.open(box.archive, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("holes")
        info.type = tarfile.GNUTYPE_SPARSE
        tar.addfile(info)
    with pytest.raises(ArtifactError, match="'holes' is a sparse file"):
        extract(box.archive, box.dest, LIMITS, name="model.tar.gz", url="u")


# -- the published attacks on tarfile -------------------------------------------------------------


def realpath_overflow_members(dest: Path) -> tuple[list[Member], str]:
    """CVE-2025-4517, as CPython's regression test builds it: directories with names long
    enough that, reached through one-letter symlinks, the real path passes PATH_MAX, so
    ``os.path.realpath`` stops resolving and the data filter sees a link to the top folder where
    it leads out; through it a hardlink and a new file land outside."""
    steps = "abcdefghijklmnop"
    max_path = os.pathconf(dest.parent, "PC_PATH_MAX")
    component = "d" * ((max_path - len(str(dest)) - 1) // (len(steps) + 1))
    members: list[Member] = []
    path = ""
    for step in steps:
        members.append(folder(os.path.join(path, component), mode=0o777))
        members.append(symlink(os.path.join(path, step), component))
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    members.append(symlink(linkpath, os.path.join(*[".."] * len(steps))))
    members.append(symlink("escape", os.path.join(linkpath, "..")))
    members.append(hardlink("flaglink", os.path.join("escape", "flag")))
    members.append(file("flaglink", b"overwrite"))
    members.append(file("escape/newfile", b"new"))
    return members, linkpath


def test_cve_2025_4517_realpath_overflow_is_refused(box: Sandbox) -> None:
    members, linkpath = realpath_overflow_members(box.dest)
    message = box.refused(members, linkpath)
    assert "goes through the symlink 'a'" in message


@pytest.mark.skipif(
    sys.version_info >= (3, 11, 13), reason="this Python has tarfile's fix for CVE-2025-4517"
)
def test_cve_2025_4517_archive_escapes_tarfiles_data_filter_here(tmp_path: Path) -> None:
    """The archive above is a real exploit on this interpreter: tarfile's own extraction with
    filter="data" writes outside its destination (why archive.py does not use it)."""
    box = make_sandbox(tmp_path)
    victim = box.root / "flag"  # beside dest: what "escape/flag" names
    victim.write_bytes(b"flag")
    members, _ = realpath_overflow_members(box.dest)
    build(box.archive, members)
    with tarfile.open(box.archive) as tar:
        tar.extractall(box.dest, filter="data")
    assert (box.root / "newfile").read_bytes() == b"new"  # written outside dest
    assert victim.read_bytes() == b"overwrite"  # and a file outside overwritten


def test_cve_2025_4138_symlink_through_symlinks_is_refused(box: Sandbox) -> None:
    """A link that looks inside when read as text ("link/link/../..") but leads out because
    "link" is itself a link to "."; a file is then written through it."""
    members = [
        symlink("escape", "link/link/../../outside"),
        symlink("link", "./"),
        file("escape/flag", b"overwrite"),
    ]
    box.refused(members, "escape/flag")
    message = box.refused(members[:2], "escape")
    assert "points outside the model folder" in message


def test_cve_2025_4330_hardlink_to_a_moved_symlink_is_refused(box: Sandbox) -> None:
    """A symlink that is harmless where it is extracted, whose parent is then replaced by a
    link so it points elsewhere, and a hardlink to it (tarfile's fallback re-extracted the
    symlink unfiltered)."""
    members = [
        file("a/t/dummy"),
        symlink("a/t/c/escape", "../../../link-here"),
        symlink("a/t/c", "../.."),
        hardlink("a/t/hardlink", "a/t/c/escape"),
    ]
    assert "appears twice" in box.refused(members, "a/t/c")
    hardlink_only = [file("a/t/dummy"), symlink("a/t/s", "dummy"), hardlink("h", "a/t/s")]
    assert "not an earlier regular file" in box.refused(hardlink_only, "h")


def test_cve_2024_12718_metadata_outside_through_a_link_is_refused(box: Sandbox) -> None:
    """A directory member named like a link that leads out: tarfile set its mode and mtime on
    the link's target, outside the folder."""
    members = [
        symlink("link", "."),
        symlink("escape", "link/../outside"),
        folder("escape", mode=0o777),
    ]
    box.refused(members, "escape")
    before = box.outside.stat()
    box.refused([symlink("x", "../outside"), folder("x", mode=0o777)], "x")
    after = box.outside.stat()
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)


@pytest.mark.parametrize(
    "name", ["../outside/flag", "a/../../outside/flag", "./../outside/x", "/tmp/shipway-abs"]
)
def test_cve_2007_4559_path_traversal_is_refused(box: Sandbox, name: str) -> None:
    box.refused([file("model.joblib"), file(name, b"overwrite")], name)
    assert not Path("/tmp/shipway-abs").exists()


def test_symlinks_to_absolute_paths_are_refused(box: Sandbox) -> None:
    box.refused([symlink("flag", str(box.outside / "flag"))], "flag")


# -- limits -----------------------------------------------------------------------------------


def test_a_tar_bomb_is_refused_from_its_headers(box: Sandbox) -> None:
    """20 MiB of zeros in a ~20 KiB archive, over a 1 MiB limit: refused before writing."""
    bomb = [file("weights.bin", bytes(20 * 1024 * 1024))]
    limits = ArchiveLimits(max_bytes=1024 * 1024, max_files=10, min_free_bytes=0)
    build(box.archive, bomb)
    assert box.archive.stat().st_size < 100_000
    message = box.refused(bomb, "weights.bin", limits)
    assert "limit of 1048576 bytes" in message
    assert "SHIPWAY_MAX_MODEL_BYTES" in message
    assert tree(box.dest) == {}


def test_hardlinks_count_their_targets_size_again(box: Sandbox) -> None:
    members = [file("w", bytes(400_000))] + [hardlink(f"h{i}", "w") for i in range(5)]
    limits = ArchiveLimits(max_bytes=1_000_000, max_files=100, min_free_bytes=0)
    box.refused(members, "h1", limits)  # w, h0 and h1: 1.2 MB


def test_too_many_files_are_refused(box: Sandbox) -> None:
    limits = ArchiveLimits(max_bytes=10**9, max_files=50, min_free_bytes=0)
    message = box.refused([file(f"f{i}") for i in range(51)], "f50", limits)
    assert "SHIPWAY_MAX_MODEL_FILES" in message
    # folders made on the way count too
    box.refused([file(f"d{i}/f") for i in range(26)], "d25/f", limits)


def test_too_little_free_disk_is_refused(box: Sandbox) -> None:
    limits = ArchiveLimits(max_bytes=10**12, max_files=100, min_free_bytes=10**15)
    with pytest.raises(ArtifactError, match="SHIPWAY_MIN_FREE_DISK_BYTES"):
        box.extract([file("model.joblib")], limits)
    assert tree(box.dest) == {}


def test_a_header_claiming_more_than_the_archive_holds_is_refused(box: Sandbox) -> None:
    """A header announcing 2**40 bytes is refused by the limit; with a larger limit, its missing
    data makes the archive invalid."""
    header = tarfile.TarInfo("huge")
    header.size = 2**40
    raw = header.tobuf(tarfile.GNU_FORMAT) + b"\0" * 4096
    box.archive.write_bytes(raw)
    with pytest.raises(ArtifactError, match="'huge' takes the model past the limit"):
        extract(box.archive, box.dest, LIMITS, name="model.tar.gz", url="u")
    big = ArchiveLimits(max_bytes=2**41, max_files=10, min_free_bytes=0)
    with pytest.raises(ArtifactError):
        extract(box.archive, box.dest, big, name="model.tar.gz", url="u")
    assert tree(box.dest) == {}


# -- fuzzing ----------------------------------------------------------------------------------


def paths(components: list[str], absolute_one_in: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda absolute, parts: ("/" if absolute else "") + "/".join(parts),
        st.sampled_from([False] * (absolute_one_in - 1) + [True]),
        st.lists(st.sampled_from(components), min_size=1, max_size=5),
    )


# Member names mostly plain (so that much gets unpacked), link targets full of ".." and links.
PLAIN_NAMES = paths(["a", "b", "c", "a", "b", "outside", "flag", "."], absolute_one_in=100)
HOSTILE_NAMES = paths(["a", "b", "..", ".", ""], absolute_one_in=3)
NAMES = st.one_of(*[PLAIN_NAMES] * 9, HOSTILE_NAMES)
TARGETS = paths(["a", "b", "c", "..", "..", ".", "", "outside", "flag"], absolute_one_in=10)
MEMBERS = st.one_of(
    *[st.builds(file, NAMES, st.sampled_from([b"", b"x", bytes(70_000)]))] * 3,
    st.builds(folder, NAMES, st.sampled_from([0o755, 0o7777])),
    *[st.builds(symlink, NAMES, TARGETS)] * 4,
    st.builds(hardlink, NAMES, st.one_of(PLAIN_NAMES, TARGETS)),
    st.builds(Member, NAMES, st.sampled_from([tarfile.FIFOTYPE, tarfile.CHRTYPE, b"Z", b"7"])),
)
FUZZ_LIMITS = ArchiveLimits(max_bytes=100_000, max_files=12, min_free_bytes=0)


@contextmanager
def fresh_sandbox() -> Iterator[Sandbox]:
    with tempfile.TemporaryDirectory() as root:
        yield make_sandbox(Path(root))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MEMBERS, min_size=1, max_size=10))
def test_random_archives_unpack_inside_or_are_refused(members: list[Member]) -> None:
    """Whatever the members (``..``, absolute names, links anywhere, links to links,
    duplicates, nested folders, sizes over the limit): either everything lands inside the
    folder, or ArtifactError; never a write outside, never another exception."""
    with fresh_sandbox() as box:
        with suppress(ArtifactError):
            box.extract(members, FUZZ_LIMITS)
        box.assert_contained()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(NAMES, TARGETS), min_size=1, max_size=8), NAMES)
def test_random_link_chains_then_a_write_stay_inside(
    links: list[tuple[str, str]], written: str
) -> None:
    """Only symlinks, then a file written by a path through them: the hardest shape."""
    members = [symlink(name, target) for name, target in links] + [file(written, b"boom")]
    with fresh_sandbox() as box:
        with suppress(ArtifactError):
            box.extract(members, FUZZ_LIMITS)
        box.assert_contained()
