"""The local backend on its own, without control groups: the fallback where the machine does
not let the server make them (instances pinned to cores, memory watched by the backend), for
instances forked from a zygote and spawned alike."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from shipway.compute.backend import InstanceSpec
from shipway.compute.local import LocalBackend, StartMethod
from shipway.domain.instance_types import InstanceType
from shipway.serving.runtime import resolve_runtime
from tests.fixtures.hostile import LEAKY

SMALL = InstanceType(name="ml.test.small", vcpus=1, memory_gib=0.5, price_per_hour=0.0)


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(LEAKY)
    return folder


def _invoke(socket_path: str) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=socket_path)
    with httpx.Client(transport=transport, base_url="http://instance", timeout=30) as client:
        return client.post("/invocations", content=b"{}", headers={"Content-Type": "text/json"})


def _ping(socket_path: str) -> int:
    transport = httpx.HTTPTransport(uds=socket_path)
    with httpx.Client(transport=transport, base_url="http://instance", timeout=5) as client:
        return client.get("/ping").status_code


START_METHODS = pytest.mark.parametrize("start_method", ["fork", "spawn"])


async def _zygote_ready(backend: LocalBackend) -> None:
    """Start the python runtime's zygote and wait for it: the first instance is a fork too."""
    backend.prestart(["python"])
    await backend.zygotes_ready()


def _forked(pid: int) -> bool:
    """Whether the instance was forked from a zygote (its parent is not this process)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1]) != os.getpid()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two cores")
@START_METHODS
def test_without_cgroups_instances_are_pinned_and_their_memory_watched(
    tmp_path: Path, start_method: StartMethod
) -> None:
    async def scenario() -> None:
        backend = LocalBackend(
            tmp_path / "logs", tmp_path / "run", cgroups=False, start_method=start_method
        )
        spec = InstanceSpec(
            instance_id="leaky-1",
            model_name="leaky",
            runtime=resolve_runtime("python"),
            model_dir=_model(tmp_path),
            instance_type=SMALL,
        )
        try:
            await _zygote_ready(backend)
            started = await backend.start(spec)
            assert started.pid is not None
            assert _forked(started.pid) == (start_method == "fork")
            assert started.port is None
            socket_path = started.address[len("unix:") :]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if await asyncio.to_thread(_ping, socket_path) == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            assert len(os.sched_getaffinity(started.pid)) == 1  # one vCPU: one core
            reason = None
            for _ in range(12):
                try:
                    answer = await asyncio.to_thread(_invoke, socket_path)
                    assert answer.status_code == 200, answer.text
                except httpx.HTTPError:
                    pass  # killed while answering
                for _ in range(10):  # the controller asks about every half second
                    reason = backend.exit_reason(spec.instance_id)
                    if reason is not None:
                        break
                    await asyncio.sleep(0.05)
                if reason is not None:
                    break
            assert reason is not None, "the instance outgrew its memory and kept running"
            assert "ran out of memory" in reason
            assert "0.50 GiB of its instance type ml.test.small" in reason
        finally:
            await backend.close(1.0)
        assert not list((tmp_path / "run").iterdir())  # its scratch folder is gone

    asyncio.run(scenario())


def test_a_stale_socket_folder_of_a_dead_server_is_removed(tmp_path: Path) -> None:
    # a pid no process has: the highest a kernel hands out, which is never this one
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    stale = Path(f"/tmp/shipway-{dead}-stale")
    stale.mkdir(exist_ok=True)
    (stale / "x.sock").write_text(json.dumps("left by kill -9"))
    backend = LocalBackend(tmp_path / "logs", tmp_path / "run", cgroups=False)
    try:
        assert not stale.exists()
    finally:
        asyncio.run(backend.close(0))


UID_BASE = 1_900_000_000


def _uid(pid: int) -> int:
    """The real user id of a running process."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="instances get users of their own from root only")
@START_METHODS
def test_an_instance_runs_as_a_user_of_its_own_unless_its_model_is_closed_to_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, start_method: StartMethod
) -> None:
    """A model others may read runs as a user of its own; one only root may read still runs,
    as root without capabilities, and the server says why and how to change it."""

    async def serving_uid(backend: LocalBackend, instance_id: str, model: Path) -> int:
        spec = InstanceSpec(
            instance_id=instance_id,
            model_name="leaky",
            runtime=resolve_runtime("python"),
            model_dir=model,
            instance_type=SMALL,
        )
        started = await backend.start(spec)
        assert started.pid is not None
        assert _forked(started.pid) == (backend.start_method == "fork")
        try:
            socket_path = started.address[len("unix:") :]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if await asyncio.to_thread(_ping, socket_path) == 200:
                        return _uid(started.pid)
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            raise AssertionError(f"instance {instance_id} did not come up")
        finally:
            await backend.stop(instance_id, 5.0)

    async def scenario() -> None:
        backend = LocalBackend(
            tmp_path / "logs",
            tmp_path / "run",
            uid_base=UID_BASE,
            unchanging=[tmp_path / "cache"],
            start_method=start_method,
        )
        try:
            await _zygote_ready(backend)
            open_model = _model(tmp_path / "open")
            assert await serving_uid(backend, "open-1", open_model) >= UID_BASE

            closed_model = _model(tmp_path / "closed")
            (closed_model / "code" / "inference.py").chmod(0o600)
            with caplog.at_level("WARNING", logger="shipway.compute.local"):
                assert await serving_uid(backend, "closed-1", closed_model) == 0
            assert "is not readable by other users (chmod -R o+rX" in caplog.text

            # an ordinary folder is looked at again at every start: opened, it gets its user
            (closed_model / "code" / "inference.py").chmod(0o644)
            assert await serving_uid(backend, "closed-2", closed_model) >= UID_BASE
        finally:
            await backend.close(1.0)

    asyncio.run(scenario())
