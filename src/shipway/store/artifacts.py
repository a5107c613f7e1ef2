"""Artifact store: turn a model's ``ModelDataUrl`` into a local folder holding its files.

A ``ModelDataUrl`` is a plain local path, a ``file://`` URL or any fsspec URL (``s3://``,
``gs://``, ``memory://``...). :meth:`ArtifactStore.fetch` resolves it to a folder:

- a local folder is used as it is;
- a ``.tar.gz`` / ``.tgz`` / ``.tar`` archive is streamed to disk (never into memory), checked
  entry by entry and unpacked into ``cache_dir/<sha256 of the archive>/``;
- any other single file is copied into a cache folder keyed by its content and name;
- a remote folder (prefix) is downloaded into a cache folder keyed by its listing.

Cache folders are filled in a hidden staging folder beside them and published with one atomic
``os.rename``, so concurrent fetches (threads or processes) never see half a folder; the loser
of a race discards its copy. Every problem with the URL or its content is an
:class:`ArtifactError`, a :class:`~shipway.domain.errors.ValidationError`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.core import split_protocol

from shipway.domain.errors import ValidationError

__all__ = ["ArtifactError", "ArtifactStore"]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_LOCAL_PROTOCOLS = frozenset({"file", "local"})
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
_CHUNK = 1024 * 1024
_REMOTE_BLOCK = 8 * _CHUNK
_VERSION_FIELDS = ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated")
_SCHEME_HINT = (
    "use a local path, file://, s3:// or another fsspec protocol (gs://, az://, memory://...)"
)


class ArtifactError(ValidationError):
    """A ``ModelDataUrl`` that cannot be turned into a model folder; the message says why."""


class ArtifactStore:
    """Resolves ``ModelDataUrl`` values to local folders, caching downloads in ``cache_dir``."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        s3_endpoint_url: str | None = None,
        storage_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._cache_dir = Path(cache_dir)
        self._s3_endpoint_url = s3_endpoint_url
        self._storage_options = storage_options or {}

    def check(self, url: str) -> None:
        """Validate ``url`` cheaply (scheme, shape, local existence); downloads nothing."""
        local = _local_path(url)
        if local is not None:
            if not local.exists():
                raise ArtifactError(f"ModelDataUrl {url} does not exist.")
            return
        protocol = _protocol(url)
        cls = _filesystem_class(url, protocol)
        if not str(cls._strip_protocol(url)).strip("/"):
            raise ArtifactError(f"ModelDataUrl {url} names no bucket, folder or file.")

    def fetch(self, url: str) -> Path:
        """Return a local folder holding the model's files, downloading and unpacking if needed."""
        local = _local_path(url)
        if local is not None:
            if local.is_dir():
                return local
            if not local.is_file():
                raise ArtifactError(f"ModelDataUrl {url} does not exist.")
            return self._fetch_file(url, None, str(local), local_copy=local)
        self.check(url)
        fs, path = self._filesystem(url)
        fs.invalidate_cache(path)
        try:
            info = fs.info(path)
        except FileNotFoundError as exc:
            raise ArtifactError(f"ModelDataUrl {url} does not exist.") from exc
        except PermissionError as exc:
            raise ArtifactError(f"Access to ModelDataUrl {url} was denied: {exc}") from exc
        if info.get("type") == "directory":
            return self._fetch_folder(url, fs, path)
        return self._fetch_file(url, fs, path, local_copy=None)

    # -- the three shapes of artifact -------------------------------------------------------

    def _fetch_file(self, url: str, fs: Any, path: str, *, local_copy: Path | None) -> Path:
        name = posixpath.basename(path.rstrip("/"))
        is_archive = name.lower().endswith(_ARCHIVE_SUFFIXES)
        move = local_copy is None  # a download is ours to move; a user's file is copied
        with self._on_disk(url, fs, path, local_copy) as (file, digest):
            if is_archive:
                return self._publish(digest, lambda dest: _unpack(url, name, file, dest))
            key = _hash({"file": name, "sha256": digest})
            return self._publish(key, lambda dest: _place(file, dest / name, move=move))

    def _fetch_folder(self, url: str, fs: Any, path: str) -> Path:
        prefix = path.rstrip("/") + "/"
        try:
            found: dict[str, dict[str, Any]] = fs.find(path, detail=True)
        except PermissionError as exc:
            raise ArtifactError(f"Access to ModelDataUrl {url} was denied: {exc}") from exc
        files: dict[str, tuple[str, dict[str, Any]]] = {}
        for full, info in found.items():
            if info.get("type") != "file" or not full.startswith(prefix) or full.endswith("/"):
                continue
            relative = full[len(prefix) :]
            _check_relative(url, relative)
            files[relative] = (full, info)
        if not files:
            raise ArtifactError(f"ModelDataUrl {url} is a folder that holds no files.")
        listing = [
            [rel, info.get("size"), _version(info)] for rel, (_, info) in sorted(files.items())
        ]
        key = _hash({"folder": fs.unstrip_protocol(path), "files": listing})

        def download(dest: Path) -> None:
            sources, targets = [], []
            for relative, (full, _) in files.items():
                target = dest.joinpath(*PurePosixPath(relative).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                sources.append(full)
                targets.append(str(target))
            fs.get(sources, targets)  # concurrent on async filesystems such as s3fs

        return self._publish(key, download)

    # -- the cache ----------------------------------------------------------------------------

    @contextmanager
    def _on_disk(
        self, url: str, fs: Any, path: str, local_copy: Path | None
    ) -> Iterator[tuple[Path, str]]:
        """Yield a local copy of the file and its sha256, streaming it down if it is remote."""
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        if local_copy is not None:
            with local_copy.open("rb") as source:
                yield local_copy, hashlib.file_digest(source, "sha256").hexdigest()
            return
        handle, name = tempfile.mkstemp(prefix=".download-", dir=self._cache_dir)
        download = Path(name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out:
                try:
                    source = fs.open(path, "rb", block_size=_REMOTE_BLOCK)
                except FileNotFoundError as exc:
                    raise ArtifactError(f"ModelDataUrl {url} does not exist.") from exc
                with source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            yield download, digest.hexdigest()
        finally:
            download.unlink(missing_ok=True)

    def _publish(self, key: str, fill: Callable[[Path], None]) -> Path:
        """Return ``cache_dir/key``, filling it through a staging folder if it is not there."""
        target = self._cache_dir / key
        if target.is_dir():
            return target
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{key[:12]}-", dir=self._cache_dir))
        try:
            staging.chmod(0o755)
            fill(staging)
            try:
                os.rename(staging, target)
            except OSError:
                if not target.is_dir():  # not a lost race: a real failure
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return target

    def _filesystem(self, url: str) -> tuple[Any, str]:
        protocol = _protocol(url)
        options: dict[str, Any] = dict(self._storage_options.get(protocol, {}))
        if protocol in _S3_PROTOCOLS and self._s3_endpoint_url:
            client_kwargs = dict(options.get("client_kwargs", {}))
            client_kwargs.setdefault("endpoint_url", self._s3_endpoint_url)
            options["client_kwargs"] = client_kwargs
        fs, path = fsspec.core.url_to_fs(url, **options)
        return fs, str(path)


# -- helpers -----------------------------------------------------------------------------


def _local_path(url: str) -> Path | None:
    """The local path ``url`` names, or ``None`` when it is a remote URL."""
    if not url.strip():
        raise ArtifactError("ModelDataUrl must not be empty.")
    protocol, path = split_protocol(url)
    if protocol is None:
        return Path(url).expanduser().absolute()
    if protocol not in _LOCAL_PROTOCOLS:
        return None
    if path.startswith("localhost/"):
        path = path[len("localhost") :]
    if not Path(path).is_absolute():
        raise ArtifactError(
            f"ModelDataUrl {url} is not an absolute file URL; write it as file:///absolute/path."
        )
    return Path(path)


def _protocol(url: str) -> str:
    protocol, _ = split_protocol(url.split("::", 1)[0])
    return protocol or "file"


def _filesystem_class(url: str, protocol: str) -> Any:
    try:
        return fsspec.get_filesystem_class(protocol)
    except ValueError as exc:
        raise ArtifactError(
            f"ModelDataUrl {url} uses the unknown scheme {protocol}://; {_SCHEME_HINT}."
        ) from exc
    except ImportError as exc:
        raise ArtifactError(
            f"ModelDataUrl {url} uses the scheme {protocol}://, whose package is missing: {exc}"
        ) from exc


def _hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _version(info: Mapping[str, Any]) -> object:
    """What a filesystem tells about a file's version (ETag, checksum or mtime), if anything."""
    return next((info[field] for field in _VERSION_FIELDS if info.get(field)), None)


def _check_relative(url: str, relative: str) -> None:
    if relative.startswith("/") or ".." in PurePosixPath(relative).parts:
        raise ArtifactError(f"ModelDataUrl {url} entry {relative!r} points outside the folder.")


def _place(source: Path, target: Path, *, move: bool) -> None:
    if move:
        os.replace(source, target)
    else:
        shutil.copyfile(source, target)


def _unpack(url: str, archive_name: str, archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                problem = _member_problem(member)
                if problem:
                    raise ArtifactError(
                        f"{archive_name} entry {member.name!r} {problem} (ModelDataUrl {url})."
                    )
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        entry = exc.tarinfo.name
        raise ArtifactError(
            f"{archive_name} entry {entry!r} was refused: {exc} (ModelDataUrl {url})."
        ) from exc
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
        raise ArtifactError(
            f"ModelDataUrl {url} is not a valid tar archive ({archive_name}: {reason})."
        ) from exc


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` cannot go into a model folder, or ``None`` when it is safe."""
    name = member.name
    if name.startswith("/"):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "points outside the model folder"
    if member.isdev():
        return "is a device or fifo file, which a model folder cannot hold"
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        link = member.linkname
        if link.startswith("/"):
            return f"is a {kind} to the absolute path {link!r}"
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, link))
        if resolved == ".." or resolved.startswith("../"):
            return f"is a {kind} to {link!r}, which points outside the model folder"
    return None
