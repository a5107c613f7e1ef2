"""ArtifactStore against real files, real tarballs and a real moto S3 server."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fsspec
import pytest

from shipway.domain.errors import ValidationError
from shipway.store.artifacts import ArtifactError, ArtifactStore
from tests.fixtures.s3 import S3Bucket

MODEL_FILES = {
    "model.joblib": b"pretend this is a pickled model" * 100,
    "code/inference.py": b"def model_fn(model_dir):\n    return None\n",
    "code/requirements.txt": b"",
}


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for name, body in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body)
    return folder


def make_tarball(path: Path, files: dict[str, bytes] = MODEL_FILES) -> Path:
    plain = path.name.endswith(".tar")
    with tarfile.open(path, "w") if plain else tarfile.open(path, "w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def store(cache: Path) -> ArtifactStore:
    return ArtifactStore(cache)


@pytest.fixture
def extract_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count real unpackings by spying on the standard library's extractall."""
    calls: list[str] = []
    original = tarfile.TarFile.extractall

    def spy(self: tarfile.TarFile, *args: Any, **kwargs: Any) -> None:
        calls.append(str(self.name))
        original(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", spy)
    return calls


# -- local folders and files ------------------------------------------------------------------


def test_local_folder_is_used_as_is(store: ArtifactStore, tmp_path: Path, cache: Path) -> None:
    folder = write_files(tmp_path / "model", MODEL_FILES)
    assert store.fetch(str(folder)) == folder
    assert cache_entries(cache) == []


def test_file_url_folder_is_used_as_is(store: ArtifactStore, tmp_path: Path) -> None:
    folder = write_files(tmp_path / "model", MODEL_FILES)
    assert store.fetch(f"file://{folder}") == folder
    assert store.fetch(f"file://{folder}/") == folder


def test_tar_gz_is_unpacked_into_a_folder_keyed_by_content(
    store: ArtifactStore, tmp_path: Path, cache: Path
) -> None:
    archive = make_tarball(tmp_path / "model.tar.gz")
    folder = store.fetch(str(archive))
    assert folder == cache / sha256(archive)
    assert read_tree(folder) == MODEL_FILES
    assert cache_entries(cache) == [sha256(archive)]


@pytest.mark.parametrize("name", ["model.tgz", "model.tar"])
def test_other_archive_suffixes_are_unpacked(
    store: ArtifactStore, tmp_path: Path, name: str
) -> None:
    archive = make_tarball(tmp_path / name)
    assert read_tree(store.fetch(f"file://{archive}")) == MODEL_FILES


def test_second_fetch_reuses_the_cached_folder(
    store: ArtifactStore, tmp_path: Path, cache: Path, extract_calls: list[str]
) -> None:
    archive = make_tarball(tmp_path / "model.tar.gz")
    first = store.fetch(str(archive))
    inode = first.stat().st_ino
    second = ArtifactStore(cache).fetch(str(archive))  # a new store: the cache is on disk
    assert second == first
    assert second.stat().st_ino == inode
    assert len(extract_calls) == 1
    assert cache_entries(cache) == [first.name]


def test_same_content_under_two_names_shares_one_folder(
    store: ArtifactStore, tmp_path: Path, cache: Path, extract_calls: list[str]
) -> None:
    archive = make_tarball(tmp_path / "model.tar.gz")
    other = tmp_path / "elsewhere" / "v2.tgz"
    other.parent.mkdir()
    other.write_bytes(archive.read_bytes())
    assert store.fetch(str(archive)) == store.fetch(str(other))
    assert len(extract_calls) == 1


def test_concurrent_fetches_see_one_complete_folder(
    store: ArtifactStore, tmp_path: Path, cache: Path
) -> None:
    big = {**MODEL_FILES, **{f"shard-{i}.bin": bytes([i]) * 200_000 for i in range(20)}}
    archive = make_tarball(tmp_path / "model.tar.gz", big)
    barrier = threading.Barrier(8)

    def fetch_and_read(_: int) -> tuple[Path, dict[str, bytes]]:
        barrier.wait()
        folder = ArtifactStore(cache).fetch(str(archive))
        return folder, read_tree(folder)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetch_and_read, range(8)))
    assert {folder for folder, _ in results} == {cache / sha256(archive)}
    assert all(tree == big for _, tree in results)
    assert cache_entries(cache) == [sha256(archive)]  # the losers' staging copies are gone


def test_single_file_gets_a_folder_of_its_own(
    store: ArtifactStore, tmp_path: Path, cache: Path
) -> None:
    model = tmp_path / "model.joblib"
    model.write_bytes(b"weights")
    folder = store.fetch(str(model))
    assert folder.parent == cache
    assert read_tree(folder) == {"model.joblib": b"weights"}
    assert model.read_bytes() == b"weights"  # the user's file is copied, not moved
    assert store.fetch(f"file://{model}") == folder


# -- unsafe or broken archives ----------------------------------------------------------------


def _regular(name: str, body: bytes = b"x") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    return info, body


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


BAD_ENTRIES: dict[str, tuple[str, list[tuple[tarfile.TarInfo, bytes | None]]]] = {
    "parent-dir": ("../evil.py", [_regular("model.joblib"), _regular("../evil.py")]),
    "nested-parent-dir": ("code/../../evil.py", [_regular("code/../../evil.py")]),
    "absolute": ("/tmp/evil.py", [_regular("/tmp/evil.py")]),
    "symlink-up": ("link", [_link("link", "../../etc/passwd", tarfile.SYMTYPE)]),
    "symlink-absolute": ("link", [_link("link", "/etc/passwd", tarfile.SYMTYPE)]),
    "symlink-nested-up": ("a/b/link", [_link("a/b/link", "../../../x", tarfile.SYMTYPE)]),
    "hardlink-up": ("hard", [_link("hard", "../outside", tarfile.LNKTYPE)]),
    "hardlink-absolute": ("hard", [_link("hard", "/etc/passwd", tarfile.LNKTYPE)]),
    "char-device": ("null", [_special("null", tarfile.CHRTYPE)]),
    "block-device": ("disk", [_special("disk", tarfile.BLKTYPE)]),
    "fifo": ("pipe", [_special("pipe", tarfile.FIFOTYPE)]),
    # Passes the lexical check (s1 -> "s2/.." looks like "."), caught by filter="data".
    "symlink-chain": (
        "s1",
        [_link("s2", ".", tarfile.SYMTYPE), _link("s1", "s2/..", tarfile.SYMTYPE)],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_unsafe_archive_entries_are_refused(
    store: ArtifactStore, tmp_path: Path, cache: Path, case: str
) -> None:
    entry, members = BAD_ENTRIES[case]
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for info, body in members:
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    with pytest.raises(ArtifactError, match=r"model\.tar\.gz entry") as caught:
        store.fetch(str(archive))
    assert repr(entry) in caught.value.message
    assert cache_entries(cache) == []
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize(
    "body",
    [b"this is not a tar archive", b"\x1f\x8b\x08\x00" + b"\x00" * 20],
    ids=["garbage", "truncated-gzip"],
)
def test_corrupt_archive_is_refused(
    store: ArtifactStore, tmp_path: Path, cache: Path, body: bytes
) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(body)
    with pytest.raises(ArtifactError, match="is not a valid tar archive"):
        store.fetch(str(archive))
    assert cache_entries(cache) == []


def test_truncated_tarball_is_refused(store: ArtifactStore, tmp_path: Path, cache: Path) -> None:
    archive = make_tarball(tmp_path / "model.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="is not a valid tar archive"):
        store.fetch(str(archive))
    assert cache_entries(cache) == []


# -- check() and bad URLs ---------------------------------------------------------------------


def test_artifact_error_is_a_validation_error() -> None:
    assert issubclass(ArtifactError, ValidationError)
    assert ArtifactError("x").code == "ValidationException"


def test_check_accepts_existing_paths_and_known_schemes(
    store: ArtifactStore, tmp_path: Path
) -> None:
    archive = make_tarball(tmp_path / "model.tar.gz")
    store.check(str(archive))
    store.check(f"file://{tmp_path}")
    store.check("s3://some-bucket/models/model.tar.gz")  # no network: nothing is contacted
    store.check("memory://models/m1")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://bucket/model.tar.gz", r"unknown scheme foo://.*s3://"),
        ("s3://", "names no bucket"),
        ("file://relative/model.tar.gz", "not an absolute file URL"),
        ("", "must not be empty"),
    ],
)
def test_check_refuses_malformed_urls(store: ArtifactStore, url: str, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        store.check(url)
    with pytest.raises(ArtifactError, match=message):
        store.fetch(url)


def test_check_and_fetch_refuse_a_missing_local_path(store: ArtifactStore, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model.tar.gz"
    for url in (str(missing), f"file://{missing}"):
        with pytest.raises(ArtifactError, match=r"ModelDataUrl .*nope/model.tar.gz does not exist"):
            store.check(url)
        with pytest.raises(ArtifactError, match="does not exist"):
            store.fetch(url)


# -- other fsspec filesystems (memory://) -----------------------------------------------------


@pytest.fixture
def memory_root() -> Iterator[str]:
    fs = fsspec.filesystem("memory")
    root = f"/shipway-test-{uuid.uuid4().hex}"
    yield root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_memory_archive_file_and_folder(
    store: ArtifactStore, tmp_path: Path, memory_root: str
) -> None:
    fs = fsspec.filesystem("memory")
    archive = make_tarball(tmp_path / "model.tar.gz")
    fs.pipe(f"{memory_root}/model.tar.gz", archive.read_bytes())
    fs.pipe(f"{memory_root}/single/model.onnx", b"onnx")
    for name, body in MODEL_FILES.items():
        fs.pipe(f"{memory_root}/folder/{name}", body)
    assert read_tree(store.fetch(f"memory://{memory_root}/model.tar.gz")) == MODEL_FILES
    assert read_tree(store.fetch(f"memory://{memory_root}/single/model.onnx")) == {
        "model.onnx": b"onnx"
    }
    assert read_tree(store.fetch(f"memory://{memory_root}/folder/")) == MODEL_FILES


# -- S3 (a real moto server) ------------------------------------------------------------------


@pytest.fixture
def s3_store(cache: Path, s3_bucket: S3Bucket) -> ArtifactStore:
    return ArtifactStore(cache, s3_endpoint_url=s3_bucket.endpoint_url)


def test_s3_tarball_is_downloaded_and_unpacked(
    s3_store: ArtifactStore, s3_bucket: S3Bucket, tmp_path: Path, cache: Path
) -> None:
    archive = make_tarball(tmp_path / "model.tar.gz")
    url = s3_bucket.upload(archive, "models/m1/model.tar.gz")
    folder = s3_store.fetch(url)
    assert folder == cache / sha256(archive)
    assert read_tree(folder) == MODEL_FILES
    assert cache_entries(cache) == [sha256(archive)]  # no download left behind
    assert s3_store.fetch(url) == folder


def test_s3_single_file(s3_store: ArtifactStore, s3_bucket: S3Bucket) -> None:
    url = s3_bucket.put("models/model.joblib", b"weights")
    assert read_tree(s3_store.fetch(url)) == {"model.joblib": b"weights"}


def test_s3_prefix_is_downloaded_whole(
    s3_store: ArtifactStore, s3_bucket: S3Bucket, cache: Path
) -> None:
    for name, body in MODEL_FILES.items():
        s3_bucket.put(f"models/m1/{name}", body)
    s3_bucket.put("models/m10/other.bin", b"not part of m1")
    folder = s3_store.fetch(s3_bucket.url("models/m1/"))
    assert read_tree(folder) == MODEL_FILES
    assert s3_store.fetch(s3_bucket.url("models/m1")) == folder

    s3_bucket.put("models/m1/model.joblib", b"retrained")
    changed = s3_store.fetch(s3_bucket.url("models/m1/"))
    assert changed != folder
    assert read_tree(changed)["model.joblib"] == b"retrained"


@pytest.mark.parametrize(
    "url", [lambda b: b.url("models/missing.tar.gz"), lambda b: "s3://no-such-bucket-shipway/k"]
)
def test_s3_missing_key_is_a_clear_error(
    s3_store: ArtifactStore, s3_bucket: S3Bucket, cache: Path, url: Callable[[S3Bucket], str]
) -> None:
    target = url(s3_bucket)
    with pytest.raises(ArtifactError, match=re.escape(f"ModelDataUrl {target} does not exist")):
        s3_store.fetch(target)
    assert cache_entries(cache) == []


def test_s3_storage_options_are_passed_per_protocol(
    cache: Path, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = ArtifactStore(
        cache, storage_options={"s3": {"client_kwargs": {"endpoint_url": s3_bucket.endpoint_url}}}
    )
    url = s3_bucket.upload(make_tarball(tmp_path / "model.tar.gz"), "model.tar.gz")
    assert read_tree(store.fetch(url)) == MODEL_FILES
