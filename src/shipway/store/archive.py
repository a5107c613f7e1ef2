"""Safe unpacking of model archives (``model.tar.gz``) into a folder, trusting nothing in them.

:func:`extract` does not use tarfile's extraction (nor its filters, which published bypasses
defeated: CVE-2025-4517, CVE-2025-4138, CVE-2025-4330, CVE-2024-12718). tarfile only parses
headers and reads member data; every path is decided here:

1. **Plan, from the headers alone.** Members are read in order into a model of the finished
   folder. A member is refused for an absolute name, a ``..`` component, a NUL byte, a device,
   fifo, sparse or unknown type, a path that goes through a symlink or a file of the archive,
   or a second member at the same path. A symlink's target is resolved against that model
   (through the archive's other symlinks, with ``..`` applied after each one, as the kernel
   does) and must stay inside the folder. A hardlink must name an earlier regular file; it
   becomes a copy. Sizes and counts are added up against :class:`ArchiveLimits` (a hardlink
   counts its target's size again), and the filesystem must keep ``min_free_bytes`` free.
2. **Write.** Directories are made one component at a time relative to an open directory fd
   (``O_NOFOLLOW | O_DIRECTORY``), files created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` relative
   to their parent's fd, so nothing can redirect a write; bytes are counted again while
   writing (a header can lie). Symlinks are made last, when no other member is left to go
   through them. Modes are 0644 for files (0755 if the member had an execute bit) and 0755 for
   directories; never setuid, setgid or sticky; the owner is the server's user.

Every refusal is an :class:`ArtifactError` naming the archive, the member and the rule or limit.
The caller owns ``dest`` and removes it on failure (:meth:`ArtifactStore._publish`).
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO

from shipway.domain.errors import ValidationError

__all__ = ["ArchiveLimits", "ArtifactError", "extract"]

_CHUNK = 1024 * 1024
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
_MAX_PATH_BYTES = 4096  # PATH_MAX
_MAX_DEPTH = 64

Parts = tuple[str, ...]


class ArtifactError(ValidationError):
    """A ``ModelDataUrl`` that cannot be turned into a model folder; the message says why."""


@dataclass(frozen=True)
class ArchiveLimits:
    """How much one archive may unpack to (settings ``max_model_bytes``, ``max_model_files``,
    ``min_free_disk_bytes``)."""

    max_bytes: int = 16 * 1024**3
    max_files: int = 100_000
    min_free_bytes: int = 1024**3


class _Kind(Enum):
    DIR = "directory"
    FILE = "file"
    SYMLINK = "symlink"


@dataclass
class _Plan:
    """The finished folder as the headers describe it, and the steps that make it."""

    kinds: dict[Parts, _Kind] = field(default_factory=dict)
    sizes: dict[Parts, int] = field(default_factory=dict)
    link_targets: dict[Parts, str] = field(default_factory=dict)
    steps: list[tuple[tarfile.TarInfo, Parts, Parts | None]] = field(default_factory=list)
    """(member, path, copied-from path for a hardlink) for directories, files and hardlinks."""
    symlinks: list[tuple[tarfile.TarInfo, Parts]] = field(default_factory=list)
    total_bytes: int = 0
    entries: int = 0


class _Refused(Exception):
    """A member that cannot go into a model folder; turned into an ArtifactError by extract."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(reason)
        self.member = member
        self.reason = reason


def extract(archive: Path, dest: Path, limits: ArchiveLimits, *, name: str, url: str) -> None:
    """Unpack ``archive`` into the empty folder ``dest``, or raise :class:`ArtifactError`.

    ``name`` (the archive's file name) and ``url`` (its ModelDataUrl) go into error messages.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            plan = _plan(tar, limits)
            _check_free_space(dest, plan.total_bytes, limits, name=name, url=url)
            _write(tar, plan, dest, limits)
    except _Refused as refused:
        raise ArtifactError(
            f"{name} entry {refused.member!r} {refused.reason} (ModelDataUrl {url})."
        ) from None
    except (*_CORRUPT, OSError) as exc:
        if isinstance(exc, OSError) and not _is_codec_error(exc):
            raise
        reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
        raise ArtifactError(
            f"ModelDataUrl {url} is not a valid tar archive ({name}: {reason})."
        ) from exc


def _is_codec_error(exc: OSError) -> bool:
    """bz2 reports a corrupt stream as an OSError without errno; real I/O failures have one."""
    return exc.errno is None


# -- plan -------------------------------------------------------------------------------------


def _plan(tar: tarfile.TarFile, limits: ArchiveLimits) -> _Plan:
    plan = _Plan()
    last_offset = -1
    while (member := tar.next()) is not None:
        if member.offset <= last_offset or member.size < 0:
            raise _Refused(member.name, "has a corrupt header (a negative size or offset)")
        last_offset = member.offset
        plan.entries += 1
        _plan_member(plan, member)
        if plan.entries > limits.max_files:
            raise _Refused(
                member.name,
                f"takes the model past the limit of {limits.max_files} files and folders "
                "(setting max_model_files; raise SHIPWAY_MAX_MODEL_FILES to allow more)",
            )
        if plan.total_bytes > limits.max_bytes:
            raise _Refused(member.name, _too_big(limits))
    for member, parts in plan.symlinks:
        _check_symlink(plan, member, parts)
    return plan


def _plan_member(plan: _Plan, member: tarfile.TarInfo) -> None:
    parts = _parts(member.name, member.name)
    if member.issparse():
        raise _Refused(member.name, "is a sparse file, which a model folder cannot hold")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        kind = "a device or fifo" if member.isdev() else f"of the unknown type {member.type!r}"
        raise _Refused(member.name, f"is {kind}, which a model folder cannot hold")
    _plan_parents(plan, member, parts)
    existing = plan.kinds.get(parts)
    if member.isdir():
        if existing not in (None, _Kind.DIR):
            raise _Refused(member.name, f"is a directory where the archive has a {existing}")
        if parts and existing is None:
            plan.kinds[parts] = _Kind.DIR
            plan.steps.append((member, parts, None))
        return
    if not parts:
        raise _Refused(member.name, "names the model folder itself")
    if existing is not None:
        raise _Refused(member.name, f"appears twice (the archive already has a {existing.value})")
    if member.issym():
        if not member.linkname or "\0" in member.linkname:
            raise _Refused(member.name, "is a symlink with an empty or invalid target")
        plan.kinds[parts] = _Kind.SYMLINK
        plan.link_targets[parts] = member.linkname
        plan.symlinks.append((member, parts))
        return
    source: Parts | None = None
    if member.islnk():
        source = _parts(member.linkname, member.name, what="hardlink target")
        if plan.kinds.get(source) is not _Kind.FILE:
            raise _Refused(
                member.name,
                f"is a hardlink to {member.linkname!r}, which is not an earlier regular file "
                "of the archive",
            )
        size = plan.sizes[source]
    else:
        size = member.size
    plan.kinds[parts] = _Kind.FILE
    plan.sizes[parts] = size
    plan.total_bytes += size
    plan.steps.append((member, parts, source))


def _plan_parents(plan: _Plan, member: tarfile.TarInfo, parts: Parts) -> None:
    """Record the folders above ``parts`` (each new one counts as an entry); refuse a path
    that goes through a file or symlink of the archive.

    A folder's own parents are always recorded before it, so the walk up stops at the first
    one already known.
    """
    depth = len(parts) - 1
    while depth > 0 and parts[:depth] not in plan.kinds:
        depth -= 1
    if depth > 0 and (kind := plan.kinds[parts[:depth]]) is not _Kind.DIR:
        raise _Refused(member.name, f"goes through the {kind.value} {'/'.join(parts[:depth])!r}")
    for new in range(depth + 1, len(parts)):
        plan.kinds[parts[:new]] = _Kind.DIR
        plan.entries += 1


def _parts(path: str, member: str, *, what: str = "path") -> Parts:
    """A member's path as components below the folder ("." and empty ones dropped)."""
    if "\0" in path:
        raise _Refused(member, f"has a NUL byte in its {what}")
    if path.startswith("/"):
        raise _Refused(member, f"has an absolute {what}")
    if len(path.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        raise _Refused(member, f"has a {what} longer than {_MAX_PATH_BYTES} bytes")
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _Refused(member, f"has a {what} that points outside the model folder")
    if len(parts) > _MAX_DEPTH:
        raise _Refused(member, f"has a {what} more than {_MAX_DEPTH} folders deep")
    return parts


def _check_symlink(plan: _Plan, member: tarfile.TarInfo, parts: Parts) -> None:
    resolved = _resolve(plan, parts, {}, set())
    if resolved is None:
        raise _Refused(
            member.name,
            f"is a symlink to {member.linkname!r}, which points outside the model folder",
        )


def _resolve(
    plan: _Plan, link: Parts, done: dict[Parts, Parts | None], visiting: set[Parts]
) -> Parts | None:
    """Where the symlink ``link`` leads in the finished folder, or None if it leaves it.

    Components are walked as the kernel walks them: a component that is one of the archive's
    symlinks is replaced by where that symlink leads before a following ``..`` applies.
    Results are remembered, so chains of links cost one walk each; a loop is refused.
    """
    if link in done:
        return done[link]
    if link in visiting:
        raise _Refused("/".join(link), "is part of a loop of symlinks")
    visiting.add(link)
    target = plan.link_targets[link]
    result: Parts | None
    if target.startswith("/"):
        result = None
    else:
        current = list(link[:-1])
        result = ()
        for component in target.split("/"):
            if component in ("", "."):
                continue
            if component == "..":
                if not current:
                    result = None
                    break
                current.pop()
                continue
            candidate = (*current, component)
            if plan.kinds.get(candidate) is _Kind.SYMLINK:
                through = _resolve(plan, candidate, done, visiting)
                if through is None:
                    result = None
                    break
                current = list(through)
            else:
                current.append(component)
        else:
            result = tuple(current)
    visiting.discard(link)
    done[link] = result
    return result


def _too_big(limits: ArchiveLimits) -> str:
    return (
        f"takes the model past the limit of {limits.max_bytes} bytes unpacked "
        "(setting max_model_bytes; raise SHIPWAY_MAX_MODEL_BYTES to allow larger models)"
    )


def _check_free_space(
    dest: Path, needed: int, limits: ArchiveLimits, *, name: str, url: str
) -> None:
    free = shutil.disk_usage(dest).free
    if free - needed < limits.min_free_bytes:
        raise ArtifactError(
            f"{name} unpacks to {needed} bytes, which would leave {max(free - needed, 0)} bytes "
            f"free on the artifact cache's disk, under the {limits.min_free_bytes} bytes kept "
            "free (setting min_free_disk_bytes; lower SHIPWAY_MIN_FREE_DISK_BYTES or free some "
            f"space) (ModelDataUrl {url})."
        )


# -- write ------------------------------------------------------------------------------------


class _Folder:
    """Directory fds below ``dest``, opened one component at a time without following links."""

    def __init__(self, root: int) -> None:
        self._root = root
        self._cached: tuple[Parts, int] | None = None

    @contextmanager
    def parent(self, parts: Parts) -> Iterator[int]:
        """An fd of the directory holding ``parts``, making missing directories on the way."""
        path = parts[:-1]
        if self._cached is not None and self._cached[0] == path:
            yield self._cached[1]
            return
        fd = self.open_dir(path)
        if self._cached is not None:
            os.close(self._cached[1])
        self._cached = (path, fd)
        yield fd

    def make_dir(self, parts: Parts) -> None:
        os.close(self.open_dir(parts))

    def close(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def open_dir(self, parts: Parts) -> int:
        fd = os.dup(self._root)
        try:
            for component in parts:
                try:
                    os.mkdir(component, 0o755, dir_fd=fd)
                    made = True
                except FileExistsError:
                    made = False
                child = os.open(component, _OPEN_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
                if made:
                    os.fchmod(fd, 0o755)  # the umask may have taken bits away
        except BaseException:
            os.close(fd)
            raise
        return fd


def _write(tar: tarfile.TarFile, plan: _Plan, dest: Path, limits: ArchiveLimits) -> None:
    root = os.open(dest, _OPEN_DIR)
    folder = _Folder(root)
    written = 0
    try:
        for member, parts, source in plan.steps:
            try:
                if member.isdir():
                    folder.make_dir(parts)
                    continue
                budget = limits.max_bytes - written
                with (
                    folder.parent(parts) as parent,
                    _member_data(tar, folder, member, source) as data,
                ):
                    written += _copy(data, parts[-1], parent, _mode(member), budget)
            except _Overflow:
                raise _Refused(member.name, _too_big(limits)) from None
            except OSError as exc:
                if _is_codec_error(exc):
                    raise
                raise _Refused(member.name, f"could not be written: {exc.strerror}") from exc
        for member, parts in plan.symlinks:
            try:
                with folder.parent(parts) as parent:
                    os.symlink(member.linkname, parts[-1], dir_fd=parent)
            except OSError as exc:
                raise _Refused(member.name, f"could not be written: {exc.strerror}") from exc
    finally:
        folder.close()
        os.close(root)


class _Overflow(Exception):
    """More bytes than the budget arrived for a member (its header understated its size)."""


@contextmanager
def _member_data(
    tar: tarfile.TarFile, folder: _Folder, member: tarfile.TarInfo, source: Parts | None
) -> Iterator[IO[bytes]]:
    """A regular member's data, or for a hardlink the file already written at ``source``
    (opened without following links)."""
    if source is None:
        data = tar.extractfile(member)
        if data is None:  # pragma: no cover - regular members always have data
            raise _Refused(member.name, "has no data")
        with data:
            yield data
        return
    fd = folder.open_dir(source[:-1])
    try:
        copied = os.open(source[-1], _READ_FILE, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(copied, "rb") as file:
        yield file


def _copy(data: IO[bytes], name: str, parent: int, mode: int, budget: int) -> int:
    fd = os.open(name, _CREATE_FILE, mode, dir_fd=parent)
    copied = 0
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, mode)  # exactly: the umask plays no part
        while chunk := data.read(_CHUNK):
            copied += len(chunk)
            if copied > budget:
                raise _Overflow
            out.write(chunk)
    return copied


def _mode(member: tarfile.TarInfo) -> int:
    executable = member.mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return 0o755 if executable else 0o644
