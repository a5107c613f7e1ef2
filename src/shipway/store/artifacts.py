"""Artifact store: turn a model's ``ModelDataUrl`` into a local folder holding its files.

A ``ModelDataUrl`` is a plain local path, a ``file://`` URL or a URL of an allowed remote
store (``s3://``, ``gs://``, ``az://``...; :mod:`shipway.store.sources` holds the allow-list,
checked by :meth:`ArtifactStore.check` at CreateModel and again by :meth:`ArtifactStore.fetch`).
:meth:`ArtifactStore.fetch` resolves it to a folder:

- a local folder is used as it is;
- a ``.tar.gz`` / ``.tgz`` / ``.tar`` archive is streamed to disk (never into memory) and
  unpacked by :func:`shipway.store.archive.extract` (which trusts nothing in it, within the
  size, file-count and free-disk limits) into ``cache_dir/<sha256 of the archive>/``;
- any other single file is copied into a cache folder keyed by its content and name;
- a remote folder (prefix) is downloaded into a cache folder keyed by its listing.

Cache folders are filled in a hidden staging folder beside them and published with one atomic
``os.rename``, so concurrent fetches (threads or processes) never see half a folder; the loser
of a race discards its copy. ``cache_dir/.refs/<key>/`` records the ModelDataUrls that produced
each entry, so :meth:`ArtifactStore.release` can remove an entry once no model uses any of them.
Staging folders and downloads a crash left behind are removed when a store opens. Every problem
with the URL or its content is an :class:`ArtifactError`, a
:class:`~shipway.domain.errors.ValidationError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.core import split_protocol

from shipway.store.archive import ArchiveLimits, ArtifactError, extract
from shipway.store.filesystems import protocol_of, storage_options
from shipway.store.sources import HTTP_PROTOCOLS, LOCAL_PROTOCOLS, SourcePolicy

__all__ = ["ArchiveLimits", "ArtifactError", "ArtifactStore", "SourcePolicy"]

log = logging.getLogger(__name__)

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_REFS = ".refs"
_LEFTOVER_PREFIXES = (".staging-", ".download-")
_LEFTOVER_AGE_SECONDS = 3600.0
_KEY = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1024 * 1024
_REMOTE_BLOCK = 8 * _CHUNK
_VERSION_FIELDS = ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated")


class ArtifactStore:
    """Resolves ``ModelDataUrl`` values to local folders, caching downloads in ``cache_dir``."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        s3_endpoint_url: str | None = None,
        storage_options: Mapping[str, Mapping[str, Any]] | None = None,
        limits: ArchiveLimits | None = None,
        sources: SourcePolicy | None = None,
    ) -> None:
        self._cache_dir = Path(cache_dir)
        self._s3_endpoint_url = s3_endpoint_url
        self._storage_options = storage_options or {}
        self._limits = limits or ArchiveLimits()
        self._sources = sources or SourcePolicy()
        self._remove_leftovers()

    def check(self, url: str) -> None:
        """Validate ``url`` cheaply (allow-list, shape, local existence); downloads nothing."""
        local = self._local_path(url)
        if local is not None:
            if not local.exists():
                raise ArtifactError(f"ModelDataUrl {url} does not exist.")
            return
        protocol = protocol_of(url)
        cls = _filesystem_class(url, protocol)
        if not str(cls._strip_protocol(url)).strip("/"):
            raise ArtifactError(f"ModelDataUrl {url} names no bucket, folder or file.")
        if protocol in HTTP_PROTOCOLS:
            self._sources.check_host(url)

    def fetch(self, url: str) -> Path:
        """Return a local folder holding the model's files, downloading and unpacking if needed."""
        local = self._local_path(url)
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
        except OSError as exc:
            raise ArtifactError(f"ModelDataUrl {url} could not be read: {exc}") from exc
        if info.get("type") == "directory":
            return self._fetch_folder(url, fs, path)
        return self._fetch_file(url, fs, path, local_copy=None)

    def release(self, url: str, still_used: Callable[[str], bool]) -> list[Path]:
        """Forget that ``url`` uses its cache entries; remove each entry none of whose
        ModelDataUrls is ``still_used`` any more (entries are shared by content, so another
        model may need one). Returns the entries removed."""
        refs_root = self._cache_dir / _REFS
        ref_name = _ref_name(url)
        removed: list[Path] = []
        if not refs_root.is_dir():
            return removed
        for refs in sorted(refs_root.iterdir()):
            if not _KEY.fullmatch(refs.name) or not (refs / ref_name).is_file():
                continue
            urls = [ref.read_text() for ref in refs.iterdir() if ref.is_file()]
            if any(still_used(other) for other in urls):
                if not still_used(url):
                    (refs / ref_name).unlink(missing_ok=True)
                continue
            entry = self._cache_dir / refs.name
            if entry.is_dir():
                # renamed first, so a concurrent fetch sees the entry whole or not at all
                doomed = self._cache_dir / f".staging-{refs.name[:12]}-released-{os.getpid()}"
                os.rename(entry, doomed)
                shutil.rmtree(doomed)
                removed.append(entry)
            shutil.rmtree(refs)
        return removed

    # -- the three shapes of artifact -------------------------------------------------------

    def _fetch_file(self, url: str, fs: Any, path: str, *, local_copy: Path | None) -> Path:
        name = posixpath.basename(path.rstrip("/"))
        is_archive = name.lower().endswith(_ARCHIVE_SUFFIXES)
        move = local_copy is None  # a download is ours to move; a user's file is copied
        with self._on_disk(url, fs, path, local_copy) as (file, digest):
            if is_archive:
                return self._publish(
                    url, digest, lambda dest: extract(file, dest, self._limits, name=name, url=url)
                )
            key = _hash({"file": name, "sha256": digest})
            return self._publish(url, key, lambda dest: _place(file, dest / name, move=move))

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
        total = sum(int(info.get("size") or 0) for _, info in files.values())
        if len(files) > self._limits.max_files:
            raise ArtifactError(
                f"ModelDataUrl {url} holds {len(files)} files, over the limit of "
                f"{self._limits.max_files} (setting max_model_files; raise "
                "SHIPWAY_MAX_MODEL_FILES to allow more)."
            )
        if total > self._limits.max_bytes:
            raise ArtifactError(_too_big(url, self._limits))
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

        return self._publish(url, key, download)

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
                size = 0
                with source:
                    while chunk := source.read(_CHUNK):
                        size += len(chunk)
                        if size > self._limits.max_bytes:
                            raise ArtifactError(_too_big(url, self._limits))
                        digest.update(chunk)
                        out.write(chunk)
            yield download, digest.hexdigest()
        finally:
            download.unlink(missing_ok=True)

    def _publish(self, url: str, key: str, fill: Callable[[Path], None]) -> Path:
        """Return ``cache_dir/key``, filling it through a staging folder if it is not there,
        and record that ``url`` uses it."""
        target = self._cache_dir / key
        if not target.is_dir():
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
        refs = self._cache_dir / _REFS / key
        refs.mkdir(parents=True, exist_ok=True)
        (refs / _ref_name(url)).write_text(url)
        return target

    def _remove_leftovers(self) -> None:
        """Remove staging folders and downloads over an hour old (a crash mid-fetch)."""
        if not self._cache_dir.is_dir():
            return
        now = time.time()
        for path in self._cache_dir.iterdir():
            if not path.name.startswith(_LEFTOVER_PREFIXES):
                continue
            try:
                if now - path.lstat().st_mtime < _LEFTOVER_AGE_SECONDS:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                log.warning("could not remove the leftover %s", path, exc_info=True)

    def _local_path(self, url: str) -> Path | None:
        """The local path ``url`` names (allowed by the source policy), or ``None`` when it is
        an allowed remote URL."""
        if not url.strip():
            raise ArtifactError("ModelDataUrl must not be empty.")
        protocol, path = split_protocol(url)
        self._sources.check_scheme(url, protocol)
        local = _local_path(url, protocol, path)
        if local is not None:
            self._sources.check_local(url, local)
        return local

    def _filesystem(self, url: str) -> tuple[Any, str]:
        protocol = protocol_of(url)
        options = storage_options(
            protocol, s3_endpoint_url=self._s3_endpoint_url, configured=self._storage_options
        )
        if protocol in HTTP_PROTOCOLS:
            options.update(self._sources.http_options(url))
        fs, path = fsspec.core.url_to_fs(url, **options)
        return fs, str(path)


# -- helpers -----------------------------------------------------------------------------


def _local_path(url: str, protocol: str | None, path: str) -> Path | None:
    """The local path ``url`` names, or ``None`` when it is a remote URL."""
    if protocol is None:
        return Path(url).expanduser().absolute()
    if protocol not in LOCAL_PROTOCOLS:
        return None
    if path.startswith("localhost/"):
        path = path[len("localhost") :]
    if not Path(path).is_absolute():
        raise ArtifactError(
            f"ModelDataUrl {url} is not an absolute file URL; write it as file:///absolute/path."
        )
    return Path(path)


def _filesystem_class(url: str, protocol: str) -> Any:
    try:
        return fsspec.get_filesystem_class(protocol)
    except ValueError as exc:
        raise ArtifactError(f"ModelDataUrl {url} uses the unknown scheme {protocol}://.") from exc
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


def _ref_name(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _too_big(url: str, limits: ArchiveLimits) -> str:
    return (
        f"ModelDataUrl {url} is larger than the limit of {limits.max_bytes} bytes "
        "(setting max_model_bytes; raise SHIPWAY_MAX_MODEL_BYTES to allow larger models)."
    )
