"""Where asynchronous requests and transform jobs read their inputs and write their outputs:
any fsspec URL the server allows, read and written as streams.

- **Allowed URLs.** Local paths and ``file://``, ``s3://`` (to ``SHIPWAY_S3_ENDPOINT_URL`` when
  set), ``gs://``, ``az://``...: the same list as model data, never ``http(s)://``. A local path
  is never inside the data dir or above it, and with ``async_data_paths`` set it must lie in one
  of those folders: a caller names paths the *server* reads and writes.
- **Reading** streams the object in chunks (:class:`ObjectBody`, a
  :class:`~shipway.router.upstream.BodySource`), so a 1 GB input passes through the server a few
  MiB at a time.
- **Writing** is atomic: a local answer is written beside its name and renamed into place; a
  remote one is an upload that only appears when it completes (S3's multipart upload), and is
  discarded if the answer breaks off. The same request written twice (a redelivery) leaves one
  object with the same content.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import split_protocol

from shipway.domain.errors import ValidationError
from shipway.store.filesystems import protocol_of, storage_options
from shipway.store.sources import HTTP_PROTOCOLS, LOCAL_PROTOCOLS, SourcePolicy

__all__ = ["CHUNK_BYTES", "InputMissing", "Locations", "ObjectBody"]

CHUNK_BYTES = 1024 * 1024
"""Bytes read or written at a time."""


class InputMissing(ValidationError):
    """An input object that does not exist (or cannot be read)."""


@dataclass(frozen=True)
class ObjectBody:
    """An object read as it is sent: its size, and its chunks read in a worker thread."""

    fs: Any
    path: str
    size: int

    async def chunks(self) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self.fs.open, self.path, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)


class Locations:
    def __init__(
        self,
        policy: SourcePolicy,
        *,
        s3_endpoint_url: str | None = None,
        configured: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._policy = policy
        self._s3_endpoint_url = s3_endpoint_url
        self._configured = configured

    def check(self, url: str, label: str) -> None:
        """Refuse a URL the server may not read or write (ValidationError says why)."""
        if not url.strip():
            raise ValidationError(f"{label} must not be empty.")
        protocol, path = split_protocol(url)
        if protocol in HTTP_PROTOCOLS:
            raise ValidationError(
                f"{label} {url} uses {protocol}://; asynchronous inputs and outputs are read "
                "and written through an object store: use s3://, file:// or another fsspec URL."
            )
        self._policy.check_scheme(url, protocol, label)
        try:
            fsspec.get_filesystem_class(protocol or "file")
        except (ValueError, ImportError) as exc:
            raise ValidationError(f"{label} {url} cannot be opened here: {exc}") from None
        local = _local_path(url, protocol, path, label)
        if local is not None:
            self._policy.check_local(url, local, label)

    def join(self, base: str, *parts: str) -> str:
        """``base`` and ``parts`` joined with single slashes."""
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def _fs(self, url: str) -> tuple[Any, str]:
        options = storage_options(
            protocol_of(url), s3_endpoint_url=self._s3_endpoint_url, configured=self._configured
        )
        fs, path = fsspec.core.url_to_fs(url, **options)
        return fs, str(path)

    def open(self, url: str) -> Any:
        """The object opened for reading (blocking); :class:`InputMissing` when it is not there."""
        fs, path = self._fs(url)
        try:
            return fs.open(path, "rb")
        except FileNotFoundError:
            raise InputMissing(f"The input object {url} does not exist.") from None

    def under(self, prefix: str) -> list[tuple[str, str, int]]:
        """Every object whose name begins with ``prefix`` (S3's prefix semantics: ``s3://b/in/``
        is the folder, ``s3://b/in/day-`` the objects named so), sorted, as (URL, key relative
        to the prefix's folder, size); a prefix naming one object gives it alone (blocking)."""
        fs, path = self._fs(prefix)
        protocol = protocol_of(prefix)
        scheme = f"{protocol}://" if protocol and prefix.startswith(f"{protocol}://") else ""
        # fsspec drops a trailing slash: the URL's says the prefix is a folder
        folder = path.rstrip("/") + "/" if prefix.endswith("/") else path.rsplit("/", 1)[0] + "/"
        try:
            info = fs.info(path)
        except (FileNotFoundError, OSError):
            info = None
        if info is not None and info.get("type") == "file":
            name = path.rsplit("/", 1)[-1]
            return [(prefix, name, int(info.get("size") or 0))]
        try:
            found = fs.find(folder.rstrip("/") or "/", detail=True)
        except FileNotFoundError:
            found = {}
        objects = []
        for name, entry in sorted(found.items()):
            name = str(name)
            if not name.startswith(folder if prefix.endswith("/") else path):
                continue
            if entry.get("type") != "file" or name.endswith("/"):
                continue
            url = scheme + name if scheme else (name if protocol is None else f"file://{name}")
            objects.append((url, name[len(folder) :], int(entry.get("size") or 0)))
        return objects

    def size(self, url: str) -> int:
        """The object's size; :class:`InputMissing` when it is not there (blocking)."""
        return self._size(url, *self._fs(url))

    def _size(self, url: str, fs: Any, path: str) -> int:
        try:
            info = fs.info(path)
        except FileNotFoundError:
            raise InputMissing(f"The input object {url} does not exist.") from None
        except (OSError, PermissionError) as exc:
            raise InputMissing(f"The input object {url} cannot be read: {exc}") from None
        if info.get("type") == "directory":
            raise InputMissing(f"The input location {url} is a folder, not an object.")
        return int(info.get("size") or 0)

    def body(self, url: str) -> bytes | ObjectBody:
        """The object as a request body (blocking): its bytes when it is at most
        :data:`CHUNK_BYTES` (read at once), else a body streamed as it is sent."""
        fs, path = self._fs(url)
        size = self._size(url, fs, path)
        if size <= CHUNK_BYTES:
            try:
                data: bytes = fs.cat_file(path)
            except FileNotFoundError:
                raise InputMissing(f"The input object {url} does not exist.") from None
            return data
        return ObjectBody(fs, path, size)

    def put(self, url: str, data: bytes, key: str | None = None) -> None:
        """Write a small object at once, atomically (blocking). ``key``: see :class:`Writer`."""
        writer = Writer(self, url, key)
        writer.open()
        writer.finish(data)

    def remove(self, url: str) -> None:
        fs, path = self._fs(url)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

    def writer(self, url: str, key: str | None = None) -> Writer:
        """An object to write piece by piece, opened (blocking). ``key``: see :class:`Writer`."""
        writer = Writer(self, url, key)
        writer.open()
        return writer


class Writer:
    """One object written piece by piece; it exists under its name only once committed.

    A local object is written to a hidden file beside it, then renamed; an S3 object is uploaded
    in parts and completed. ``key`` names the writing (a request's id): a writer killed with the
    process leaves its hidden file, and the next writing of the same key (the rerun) reuses and
    renames it instead of leaving it behind. Without a key, each writing is unique.

    Its methods block: call them from a worker thread."""

    def __init__(self, locations: Locations, url: str, key: str | None = None) -> None:
        self.url = url
        self._fs, self._path = locations._fs(url)
        self._local = protocol_of(url) in LOCAL_PROTOCOLS
        parent, _, name = self._path.rpartition("/")
        self._temporary = (
            f"{parent}/.{name}.{key or uuid.uuid4().hex}.partial" if self._local else self._path
        )
        self._handle: Any = None

    def open(self) -> None:
        parent = self._path.rsplit("/", 1)[0]
        if self._local and parent:
            os.makedirs(parent, exist_ok=True)
        self._handle = self._fs.open(self._temporary, "wb")

    def write(self, data: bytes) -> None:
        self._handle.write(data)

    def commit(self) -> None:
        self._handle.close()
        if self._local:
            os.replace(self._temporary, self._path)

    def finish(self, data: bytes) -> None:
        """Write the last piece and commit; on failure nothing appears."""
        try:
            if data:
                self.write(data)
        except BaseException:
            self.discard()
            raise
        self.commit()

    def discard(self) -> None:
        """Drop what was written: the object does not appear (or keeps its former content)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if hasattr(handle, "discard") and not self._local:
            handle.discard()  # an upload in parts, aborted
            return
        with contextlib.suppress(OSError):
            handle.close()
        if self._local:
            with contextlib.suppress(OSError):
                os.unlink(self._temporary)


def _local_path(url: str, protocol: str | None, path: str, label: str) -> Path | None:
    if protocol is None:
        if not Path(url).is_absolute():
            raise ValidationError(f"{label} {url} is not an absolute path or URL.")
        return Path(url)
    if protocol not in LOCAL_PROTOCOLS:
        return None
    if path.startswith("localhost/"):
        path = path[len("localhost") :]
    if not Path(path).is_absolute():
        raise ValidationError(
            f"{label} {url} is not an absolute file URL; write it as file:///absolute/path."
        )
    return Path(path)
