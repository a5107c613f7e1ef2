"""Model data that tries to reach what it should not, through boto3 against a real server:
server-side request forgery through ModelDataUrl, an archive that escaped tarfile's data filter
(CVE-2025-4517), a tar bomb, and the cache entry a deleted model leaves."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.fixtures.models import train_sklearn
from tests.fixtures.server import ShipwayServer, start_server

MAX_MODEL_BYTES = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    """One server for the module, allowing models of 8 MiB at most."""
    running = start_server(
        tmp_path_factory.mktemp("model-data") / "home",
        env={"SHIPWAY_MAX_MODEL_BYTES": str(MAX_MODEL_BYTES), "SHIPWAY_MIN_FREE_DISK_BYTES": "0"},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sagemaker(server: ShipwayServer) -> Any:
    session = boto3.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
    )
    return session.client("sagemaker", endpoint_url=server.url)


def create_model(sagemaker: Any, name: str, url: str) -> None:
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sklearn", "ModelDataUrl": url},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
    )


def create_endpoint(sagemaker: Any, name: str) -> None:
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def wait_until_settled(sagemaker: Any, name: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating"):
            return described
        time.sleep(0.2)
    raise AssertionError(f"endpoint {name} still creating after {timeout} s")


def delete_all(sagemaker: Any, name: str) -> None:
    sagemaker.delete_endpoint(EndpointName=name)
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    sagemaker.delete_endpoint_config(EndpointConfigName=name)
    sagemaker.delete_model(ModelName=name)


def cache_entries(server: ShipwayServer) -> list[str]:
    cache = server.home / "artifacts"
    return sorted(p.name for p in cache.iterdir() if p.name != ".refs") if cache.exists() else []


# -- server-side request forgery --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:{port}/api/models", "http://, which this server does not allow"),
        ("http://169.254.169.254/latest/meta-data/iam/", "http://, which this server does not"),
        ("https://metadata.google.internal/computeMetadata/v1/", "https://, which this server"),
        ("ftp://127.0.0.1/model.tar.gz", "scheme ftp://, which is not allowed"),
        ("memory://models/model.tar.gz", "scheme memory://, which is not allowed"),
        ("simplecache::http://127.0.0.1:{port}/x.tar.gz", "chains several filesystems"),
        ("{home}/shipway.db", "belongs to the Shipway server itself"),
        ("file://{home}", "belongs to the Shipway server itself"),
    ],
    ids=["loopback", "metadata", "gcp-metadata", "ftp", "memory", "chained", "db", "home"],
)
def test_create_model_refuses_urls_the_server_must_not_fetch(
    server: ShipwayServer, sagemaker: Any, url: str, message: str
) -> None:
    target = url.format(port=server.port, home=server.home)
    with pytest.raises(ClientError) as caught:
        create_model(sagemaker, "ssrf", target)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert message in error["Message"]
    assert target in error["Message"]
    assert sagemaker.list_models(NameContains="ssrf")["Models"] == []


# -- hostile archives -----------------------------------------------------------------------------


def realpath_overflow_archive(path: Path, dest: Path) -> str:
    """CVE-2025-4517's archive (as CPython's regression test builds it) for unpacking into
    ``dest``; returns the name of the link that goes through the first short symlink."""
    steps = "abcdefghijklmnop"
    max_path = os.pathconf(dest.parent, "PC_PATH_MAX")
    component = "d" * ((max_path - len(str(dest)) - 1) // (len(steps) + 1))
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, kind: bytes, link: str = "", body: bytes = b"") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size, info.mode = kind, link, len(body), 0o777
            tar.addfile(info, io.BytesIO(body) if body else None)

        prefix = ""
        for step in steps:
            add(os.path.join(prefix, component), tarfile.DIRTYPE)
            add(os.path.join(prefix, step), tarfile.SYMTYPE, component)
            prefix = os.path.join(prefix, component)
        linkpath = os.path.join(*steps, "l" * 254)
        add(linkpath, tarfile.SYMTYPE, os.path.join(*[".."] * len(steps)))
        add("escape", tarfile.SYMTYPE, os.path.join(linkpath, ".."))
        add("escape/newfile", tarfile.REGTYPE, body=b"new")
    return linkpath


def test_the_cve_2025_4517_archive_fails_the_endpoint_and_writes_nothing_outside(
    server: ShipwayServer, sagemaker: Any, tmp_path: Path
) -> None:
    archive = tmp_path / "model.tar.gz"
    # built for the staging folder's length, so the real path overflows there
    staging_like = server.home / "artifacts" / (".staging-0123456789ab-" + "x" * 8)
    linkpath = realpath_overflow_archive(archive, staging_like)
    create_model(sagemaker, "cve-2025-4517", str(archive))
    create_endpoint(sagemaker, "cve-2025-4517")
    described = wait_until_settled(sagemaker, "cve-2025-4517")
    assert described["EndpointStatus"] == "Failed"
    assert f"model.tar.gz entry {linkpath!r}" in described["FailureReason"]
    assert "goes through the symlink 'a'" in described["FailureReason"]
    assert [p for p in server.home.parent.rglob("newfile")] == []
    assert [p for p in tmp_path.rglob("newfile")] == []
    assert cache_entries(server) == []  # the staging folder is gone too
    delete_all(sagemaker, "cve-2025-4517")


def test_a_tar_bomb_fails_the_endpoint_naming_the_limit(
    server: ShipwayServer, sagemaker: Any, tmp_path: Path
) -> None:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("model.joblib")
        info.size = 4 * MAX_MODEL_BYTES  # 32 MiB of zeros: a few dozen KiB compressed
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert archive.stat().st_size < MAX_MODEL_BYTES // 100
    create_model(sagemaker, "tar-bomb", str(archive))
    create_endpoint(sagemaker, "tar-bomb")
    described = wait_until_settled(sagemaker, "tar-bomb")
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "model.tar.gz entry 'model.joblib'" in reason
    assert f"limit of {MAX_MODEL_BYTES} bytes" in reason
    assert "SHIPWAY_MAX_MODEL_BYTES" in reason
    assert cache_entries(server) == []
    delete_all(sagemaker, "tar-bomb")


# -- the cache after DeleteModel ------------------------------------------------------------------


def test_deleting_the_last_model_of_an_archive_removes_its_cache_entry(
    server: ShipwayServer, sagemaker: Any, tmp_path: Path
) -> None:
    trained = train_sklearn(tmp_path / "model")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(trained.folder / "model.joblib", arcname="model.joblib")
    twin = tmp_path / "twin.tar.gz"  # same content, another URL: one shared cache entry
    twin.write_bytes(archive.read_bytes())

    create_model(sagemaker, "cached", str(archive))
    create_endpoint(sagemaker, "cached")
    assert wait_until_settled(sagemaker, "cached")["EndpointStatus"] == "InService"
    entries = cache_entries(server)
    assert len(entries) == 1
    create_model(sagemaker, "twin", f"file://{twin}")
    create_endpoint(sagemaker, "twin")
    assert wait_until_settled(sagemaker, "twin")["EndpointStatus"] == "InService"
    assert cache_entries(server) == entries

    delete_all(sagemaker, "cached")
    assert cache_entries(server) == entries  # "twin" still uses it
    delete_all(sagemaker, "twin")
    assert cache_entries(server) == []
    assert archive.exists()
    assert twin.exists()
