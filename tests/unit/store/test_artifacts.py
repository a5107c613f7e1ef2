"""ArtifactStore against real files, real tarballs, a real HTTP server on loopback and a real
moto S3 server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import re
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shipway.domain.errors import ValidationError
from shipway.store.artifacts import ArchiveLimits, ArtifactError, ArtifactStore, SourcePolicy
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
    """The cache's folders (staging leftovers included), without the index of URLs."""
    return sorted(p.name for p in cache.iterdir() if p.name != ".refs") if cache.exists() else []


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def store(cache: Path) -> ArtifactStore:
    return ArtifactStore(cache)


@pytest.fixture
def extract_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count real unpackings by spying on the standard library's tarfile.open for reading."""
    calls: list[str] = []
    original = tarfile.open

    def spy(name: Any, mode: str = "r", *args: Any, **kwargs: Any) -> tarfile.TarFile:
        if mode.startswith("r"):
            calls.append(str(name))
        return original(name, mode, *args, **kwargs)

    monkeypatch.setattr(tarfile, "open", spy)
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
    # A lexical check passes it (s1 -> "s2/.." looks like "."), but s2 is "." so s1 is "..".
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
    store.check("s3a://some-bucket/models/model.tar.gz")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://bucket/model.tar.gz", r"scheme foo://, which is not allowed; use .*s3://"),
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


# -- the allow-list of sources ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://models/model.tar.gz", "scheme memory://, which is not allowed"),
        ("ftp://127.0.0.1/model.tar.gz", "scheme ftp://, which is not allowed"),
        ("simplecache::s3://bucket/model.tar.gz", "chains several filesystems"),
        ("simplecache::http://127.0.0.1:9/model.tar.gz", "chains several filesystems"),
        ("http://127.0.0.1:9/model.tar.gz", "http://, which this server does not allow"),
        ("https://example.com/model.tar.gz", "SHIPWAY_ALLOW_HTTP_MODEL_DATA"),
        ("http://169.254.169.254/latest/meta-data/", "http://, which this server does not allow"),
    ],
)
def test_sources_off_the_list_are_refused(store: ArtifactStore, url: str, message: str) -> None:
    with pytest.raises(ArtifactError, match=re.escape(message)) as caught:
        store.check(url)
    assert "s3://" in caught.value.message  # it says what is allowed
    with pytest.raises(ArtifactError, match=re.escape(message)):
        store.fetch(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/model.tar.gz",
        "http://localhost:9/model.tar.gz",
        "http://169.254.169.254/latest/meta-data/",
        "http://[0:0:0:0:0:0:0:1]:9/model.tar.gz",
        "http://[0:0:0:0:0:ffff:7f00:1]:9/model.tar.gz",  # ::ffff:127.0.0.1
        "http://[fe80:0:0:0:0:0:0:1]/model.tar.gz",
        "http://[64:ff9b:0:0:0:0:a9fe:a9fe]/model.tar.gz",  # NAT64 of 169.254.169.254
        "http://10.0.0.1/model.tar.gz",
        "http://192.168.1.1/model.tar.gz",
        "http://0.0.0.0:9/model.tar.gz",
        "http://224.0.0.1/model.tar.gz",
        "https://100.64.0.1/model.tar.gz",
    ],
)
def test_http_to_non_public_hosts_is_refused_even_when_http_is_allowed(
    cache: Path, url: str
) -> None:
    store = ArtifactStore(cache, sources=SourcePolicy(allow_http=True))
    with pytest.raises(ArtifactError, match="non-public address") as caught:
        store.check(url)
    assert "SHIPWAY_ALLOW_PRIVATE_MODEL_DATA_HOSTS" in caught.value.message
    with pytest.raises(ArtifactError, match="non-public address"):
        store.fetch(url)
    assert cache_entries(cache) == []


@pytest.mark.parametrize("url", ["http://[::1]:9/model.tar.gz", "http://[fe80::1]/m.tar.gz"])
def test_ipv6_literals_with_double_colons_are_refused(cache: Path, url: str) -> None:
    """fsspec reads '::' as a chain of filesystems: refused as one, whatever the host."""
    store = ArtifactStore(cache, sources=SourcePolicy(allow_http=True))
    with pytest.raises(ArtifactError, match="chains several filesystems"):
        store.check(url)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/model.tar.gz")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving a folder: (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_Files, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_to_a_private_host_works_when_the_operator_allows_it(
    cache: Path, tmp_path: Path, http_root: tuple[str, Path]
) -> None:
    base, root = http_root
    archive = make_tarball(root / "model.tar.gz")
    store = ArtifactStore(cache, sources=SourcePolicy(allow_http=True, allow_private_hosts=True))
    store.check(f"{base}/model.tar.gz")
    folder = store.fetch(f"{base}/model.tar.gz")
    assert folder == cache / sha256(archive)
    assert read_tree(folder) == MODEL_FILES


def test_http_redirects_are_not_followed(cache: Path, http_root: tuple[str, Path]) -> None:
    base, root = http_root
    make_tarball(root / "model.tar.gz")
    store = ArtifactStore(cache, sources=SourcePolicy(allow_http=True, allow_private_hosts=True))
    with pytest.raises(ArtifactError):
        store.fetch(f"{base}/redirect/model.tar.gz")
    assert cache_entries(cache) == []


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "demo-model").mkdir(parents=True)
    write_files(home / "demo-model", MODEL_FILES)
    (home / "shipway.db").write_bytes(b"SQLite format 3")
    return home


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    keys = tmp_path / "etc" / "keys.json"
    keys.parent.mkdir()
    keys.write_text("{}")
    return keys


@pytest.fixture
def guarded(cache: Path, home: Path, keys: Path) -> ArtifactStore:
    return ArtifactStore(
        cache,
        sources=SourcePolicy(protected_paths=[home, keys], own_model_paths=[home / "demo-model"]),
    )


@pytest.mark.parametrize(
    "where",
    [
        lambda home, keys: home / "shipway.db",
        lambda home, keys: home,
        lambda home, keys: f"file://{home}/shipway.db",
        lambda home, keys: home.parent,  # holds the data dir
        lambda home, keys: keys,
        lambda home, keys: keys.parent,  # holds the keys file
        lambda home, keys: f"{home}/demo-model/../shipway.db",
    ],
    ids=["db", "home", "file-url", "above-home", "keys", "keys-folder", "dotdot"],
)
def test_local_paths_of_the_server_itself_are_refused(
    guarded: ArtifactStore, home: Path, keys: Path, where: Callable[[Path, Path], object]
) -> None:
    url = str(where(home, keys))
    with pytest.raises(ArtifactError, match="belongs to the Shipway server itself"):
        guarded.check(url)
    with pytest.raises(ArtifactError, match="belongs to the Shipway server itself"):
        guarded.fetch(url)


def test_a_symlink_into_the_data_dir_is_refused(
    guarded: ArtifactStore, home: Path, tmp_path: Path
) -> None:
    innocent = tmp_path / "innocent"
    innocent.symlink_to(home)
    with pytest.raises(ArtifactError, match="belongs to the Shipway server itself"):
        guarded.check(str(innocent / "shipway.db"))


def test_the_servers_own_models_and_other_paths_are_allowed(
    guarded: ArtifactStore, home: Path, tmp_path: Path
) -> None:
    assert guarded.fetch(str(home / "demo-model")) == home / "demo-model"
    folder = write_files(tmp_path / "model", MODEL_FILES)
    assert guarded.fetch(str(folder)) == folder


def test_model_data_paths_confine_local_model_data(cache: Path, tmp_path: Path) -> None:
    allowed = write_files(tmp_path / "models" / "m1", MODEL_FILES)
    elsewhere = write_files(tmp_path / "elsewhere", MODEL_FILES)
    store = ArtifactStore(cache, sources=SourcePolicy(model_data_paths=[tmp_path / "models"]))
    assert store.fetch(str(allowed)) == allowed
    for url in (str(elsewhere), f"file://{elsewhere}", f"{allowed}/../../elsewhere"):
        with pytest.raises(ArtifactError, match="SHIPWAY_MODEL_DATA_PATHS"):
            store.check(url)


# -- limits -------------------------------------------------------------------------------------


def test_an_archive_over_max_model_bytes_is_refused_and_leaves_nothing(
    cache: Path, tmp_path: Path
) -> None:
    archive = make_tarball(tmp_path / "model.tar.gz", {"weights.bin": bytes(3 * 1024 * 1024)})
    store = ArtifactStore(cache, limits=ArchiveLimits(max_bytes=2 * 1024 * 1024))
    with pytest.raises(ArtifactError, match=r"'weights\.bin'.*SHIPWAY_MAX_MODEL_BYTES"):
        store.fetch(str(archive))
    assert cache_entries(cache) == []


def test_a_remote_download_over_max_model_bytes_is_refused(
    cache: Path, s3_bucket: S3Bucket
) -> None:
    store = ArtifactStore(
        cache, s3_endpoint_url=s3_bucket.endpoint_url, limits=ArchiveLimits(max_bytes=1000)
    )
    url = s3_bucket.put("models/model.joblib", bytes(5000))
    with pytest.raises(ArtifactError, match="SHIPWAY_MAX_MODEL_BYTES"):
        store.fetch(url)
    for i in range(3):
        s3_bucket.put(f"models/folder/part-{i}", bytes(400))
    with pytest.raises(ArtifactError, match="SHIPWAY_MAX_MODEL_BYTES"):
        store.fetch(s3_bucket.url("models/folder/"))
    many = ArtifactStore(
        cache, s3_endpoint_url=s3_bucket.endpoint_url, limits=ArchiveLimits(max_files=2)
    )
    with pytest.raises(ArtifactError, match="SHIPWAY_MAX_MODEL_FILES"):
        many.fetch(s3_bucket.url("models/folder/"))
    assert cache_entries(cache) == []


# -- releasing cache entries ----------------------------------------------------------------------


def test_release_removes_an_entry_once_no_model_uses_it(
    store: ArtifactStore, tmp_path: Path, cache: Path
) -> None:
    archive = make_tarball(tmp_path / "model.tar.gz")
    copy = tmp_path / "copy.tar.gz"
    copy.write_bytes(archive.read_bytes())
    first, second = str(archive), f"file://{copy}"
    entry = store.fetch(first)
    assert store.fetch(second) == entry  # same content: one shared entry

    # the model using `first` is deleted; another model still uses `second`
    assert store.release(first, lambda url: url == second) == []
    assert read_tree(entry) == MODEL_FILES
    # a model that still uses the same URL keeps it too
    assert store.release(second, lambda url: url == second) == []
    assert entry.is_dir()

    assert store.release(second, lambda url: False) == [entry]
    assert cache_entries(cache) == []
    assert not (cache / ".refs" / entry.name).exists()
    assert store.release(second, lambda url: False) == []  # nothing left to release
    assert archive.exists()  # the user's files stay
    assert copy.exists()


def test_release_leaves_entries_of_other_urls(
    store: ArtifactStore, tmp_path: Path, cache: Path
) -> None:
    one = store.fetch(str(make_tarball(tmp_path / "one.tar.gz")))
    other = store.fetch(str(make_tarball(tmp_path / "two.tar.gz", {"model.onnx": b"onnx"})))
    assert store.release(str(tmp_path / "one.tar.gz"), lambda url: False) == [one]
    assert cache_entries(cache) == [other.name]


def test_leftovers_of_a_crash_are_removed_when_the_store_opens(cache: Path) -> None:
    cache.mkdir()
    old_staging = cache / ".staging-0123456789ab-x1"
    (old_staging / "code").mkdir(parents=True)
    old_download = cache / ".download-abc"
    old_download.write_bytes(b"partial")
    fresh = cache / ".staging-0123456789ab-x2"  # maybe another process at work right now
    fresh.mkdir()
    two_hours_ago = time.time() - 7200
    for path in (old_staging, old_download):
        os.utime(path, (two_hours_ago, two_hours_ago))
    ArtifactStore(cache)
    assert cache_entries(cache) == [fresh.name]


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
