"""Instances forked from a zygote: started from a process that imported everything already,
holding nothing of the server's, watched and stopped like spawned ones, and with a zygote that
may die without taking them along.

The sandbox tests (test_sandbox.py, test_local_backend.py, test_resilience.py...) run with fork,
the backend's default; these cover what forking adds. A backend forks an instance once its
runtime's zygote is ready (spawning it until then): most tests here start the zygotes ahead and
wait for them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipway.compute.backend import InstanceSpec, StartedInstance
from shipway.compute.local import LocalBackend, StartMethod
from shipway.domain.instance_types import InstanceType
from shipway.serving.runtime import resolve_runtime
from tests.fixtures import models
from tests.fixtures.server import start_server
from tests.integration.deploy import deploy, invoke_json

TWO = InstanceType(name="ml.test.two", vcpus=2, memory_gib=2, price_per_hour=0.0)
SKLEARN = resolve_runtime("sklearn")
PYTHON = resolve_runtime("python")
SECRET_VARIABLE = "SHIPWAY_ZYGOTE_TEST_SECRET"

PROBE = textwrap.dedent(
    """
    import json, os, sys

    import numpy as np
    from threadpoolctl import threadpool_info

    # at import, outside any limit the runtime sets around load and predict
    SEEN = {
        "blas": sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}),
        "omp_env": os.environ.get("OMP_NUM_THREADS"),
        "random": float(np.random.rand()),
        "path": sys.path,
        "cwd": os.getcwd(),
    }

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        return SEEN

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)
CRASHING = textwrap.dedent(
    """
    import os, sys

    def model_fn(model_dir):
        print("giving up on this model", file=sys.stderr, flush=True)
        os._exit(7)
    """
)


def _python_model(folder: Path, code: str) -> Path:
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(code)
    return folder


def _spec(instance_id: str, model_dir: Path, runtime: str = SKLEARN, **kwargs: Any) -> InstanceSpec:
    return InstanceSpec(
        instance_id=instance_id,
        model_name="m",
        runtime=runtime,
        model_dir=model_dir,
        instance_type=kwargs.pop("instance_type", TWO),
        **kwargs,
    )


async def _backend(
    folder: Path, *ready: str, start_method: StartMethod = "fork", **kwargs: Any
) -> LocalBackend:
    """A backend whose zygotes of the ``ready`` runtimes are started and ready."""
    backend = LocalBackend(folder / "logs", folder / "run", start_method=start_method, **kwargs)
    backend.prestart(ready)
    await backend.zygotes_ready()
    return backend


def _client(started: StartedInstance) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=started.address[len("unix:") :])
    return httpx.Client(transport=transport, base_url="http://instance", timeout=30)


async def _healthy(started: StartedInstance, timeout: float = 60.0) -> None:
    def ping() -> int:
        with _client(started) as client:
            return client.get("/ping").status_code

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await asyncio.to_thread(ping) == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"instance at {started.address} not healthy within {timeout} s")


async def _post(started: StartedInstance, body: Any) -> Any:
    def post() -> Any:
        with _client(started) as client:
            answer = client.post("/invocations", json=body)
            assert answer.status_code == 200, answer.text
            return answer.json()

    return await asyncio.to_thread(post)


async def _exit_reason(backend: LocalBackend, instance_id: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = backend.exit_reason(instance_id)
        if reason is not None:
            return reason
        await asyncio.sleep(0.05)
    raise AssertionError(f"instance {instance_id} still running after {timeout} s")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session..."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2 :].split()


def _parent(pid: int) -> int:
    return int(_stat(pid)[1])


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def _remove(folder: Path) -> None:
    assert folder.is_dir()
    shutil.rmtree(folder)


def _read(path: str) -> str:
    return Path(path).read_text()


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except FileNotFoundError:
        return False


def _files(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found[int(entry.name)] = os.readlink(entry)
        except OSError:
            continue
    return found


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = [item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item]
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def test_instances_fork_from_their_runtimes_zygote_holding_nothing_of_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_VARIABLE, "the server's secret")
    trained = models.train_sklearn(tmp_path / "model")

    async def scenario() -> int:
        backend = await _backend(tmp_path, SKLEARN)
        try:
            first = await backend.start(_spec("first-1", trained.folder))
            second = await backend.start(_spec("second-1", trained.folder))
            await asyncio.gather(_healthy(first), _healthy(second))
            zygote = backend.zygote_pid(SKLEARN)
            assert zygote is not None
            assert first.pid is not None
            assert second.pid is not None
            assert _parent(first.pid) == _parent(second.pid) == zygote
            assert _parent(zygote) == os.getpid()
            assert b"shipway.compute.zygote" in _cmdline(zygote)

            # the zygote: one thread, and no file but its standard streams, its control socket,
            # its epoll and its children's pidfds
            assert _threads(zygote) == 1
            zygote_files = _files(zygote)
            assert zygote_files[0] == "/dev/null"
            kinds = ("socket:", "anon_inode:[eventpoll]", "anon_inode:[pidfd]")
            assert [n for n, t in zygote_files.items() if n > 2 and not t.startswith(kinds)] == []

            for started, name in ((first, "first-1"), (second, "second-1")):
                assert started.pid is not None
                # a session of its own: stopping it (killpg) takes whatever it started too
                assert int(_stat(started.pid)[3]) == started.pid
                environ = _environ(started.pid)  # what the zygote was started with
                assert SECRET_VARIABLE not in environ
                assert not [k for k in environ if k.startswith(("SHIPWAY", "AWS_"))], environ
                files = _files(started.pid)
                log = str(backend.log_path(name))
                assert files[0] == "/dev/null"
                assert files[1] == files[2] == log
                assert files[3].startswith("socket:")
                plain = {t for t in files.values() if t.startswith("/")}
                assert plain <= {"/dev/null", log}, plain  # not the zygote's log, nor another's
                answer = await _post(started, trained.rows.tolist())
                assert answer == trained.expected.tolist()
                sandbox = _read(log)
                assert "forked from a zygote" in sandbox
                assert "no new privileges" in sandbox
            return zygote
        finally:
            await backend.close(5.0)

    zygote = asyncio.run(scenario())
    assert not list((tmp_path / "run").iterdir())  # scratch and zygote folders gone
    assert not _alive(zygote)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_thread_pools_are_sized_from_the_instance_type_and_randomness_is_each_instances(
    tmp_path: Path, start_method: StartMethod
) -> None:
    """The zygote runs BLAS with one thread; an instance of two vCPUs gets two, as a spawned
    one does, and numpy's global generator is seeded again in each fork."""
    model = _python_model(tmp_path / "probe", PROBE)

    async def scenario() -> list[dict[str, Any]]:
        backend = await _backend(tmp_path, PYTHON, start_method=start_method)
        try:
            seen = []
            for n in range(2):
                started = await backend.start(_spec(f"probe-{n}", model, PYTHON))
                await _healthy(started)
                assert started.pid is not None
                parent = _parent(started.pid)
                assert (parent == os.getpid()) == (start_method == "spawn")
                seen.append(await _post(started, {}))
            return seen
        finally:
            await backend.close(5.0)

    first, second = asyncio.run(scenario())
    threads = TWO.threads()
    for seen in (first, second):
        assert seen["blas"] == [threads], seen
        assert seen["omp_env"] == str(threads)
        assert seen["cwd"].startswith(str(tmp_path / "run")), seen
        assert seen["cwd"] in seen["path"]  # python -m puts its working directory there
        assert not [p for p in seen["path"] if "zygote" in p], seen["path"]
    assert first["random"] != second["random"]


def test_a_forked_instance_gives_every_exit_reason_a_spawned_one_gives(tmp_path: Path) -> None:
    trained = models.train_sklearn(tmp_path / "model")
    empty = tmp_path / "empty"
    empty.mkdir()
    crashing = _python_model(tmp_path / "crashing", CRASHING)

    async def scenario() -> None:
        backend = await _backend(tmp_path, SKLEARN, PYTHON)
        try:
            # the failure file: a model that cannot load
            await backend.start(_spec("noload-1", empty))
            reason = await _exit_reason(backend, "noload-1")
            assert reason.startswith(f"no model file in {empty}"), reason
            # exit status and the log's last lines
            await backend.start(_spec("crash-1", crashing, PYTHON))
            reason = await _exit_reason(backend, "crash-1")
            assert reason.startswith("the instance process exited with status 7"), reason
            assert "giving up on this model" in reason
            # killed by a signal
            killed = await backend.start(_spec("killed-1", trained.folder))
            await _healthy(killed)
            assert killed.pid is not None
            assert backend.exit_reason("killed-1") is None
            os.kill(killed.pid, signal.SIGKILL)
            reason = await _exit_reason(backend, "killed-1")
            assert reason == "the instance process was killed by signal SIGKILL"
            for instance_id in ("noload-1", "crash-1", "killed-1"):
                assert "forked from a zygote" in _read(str(backend.log_path(instance_id)))
        finally:
            await backend.close(5.0)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "runtime",
    [
        "shipway_no_such_extra.runtime:MissingRuntime",  # its module cannot be imported
        resolve_runtime("torch"),  # its library may be missing (an optional extra)
    ],
)
def test_a_runtime_the_zygote_cannot_import_fails_its_instance_as_a_spawned_one_does(
    tmp_path: Path, runtime: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    async def reason(start_method: StartMethod) -> str:
        backend = await _backend(tmp_path / start_method, runtime, start_method=start_method)
        try:
            started = time.monotonic()
            await backend.start(_spec("broken-1", empty, runtime))
            why = await _exit_reason(backend, "broken-1", timeout=60)
            assert time.monotonic() - started < 60
            forked = "forked from a zygote" in _read(str(backend.log_path("broken-1")))
            assert forked == (start_method == "fork")
            return why
        finally:
            await backend.close(5.0)

    forked = asyncio.run(reason("fork"))
    spawned = asyncio.run(reason("spawn"))
    if runtime.startswith("shipway_no_such_extra"):
        # the traceback's frames differ (runpy's or the zygote's); its last line does not
        assert forked.startswith("the instance process exited with status 1: "), forked
        assert forked.endswith("No module named 'shipway_no_such_extra'"), forked
        assert spawned.endswith("No module named 'shipway_no_such_extra'"), spawned
    else:
        assert forked == spawned, (forked, spawned)


def test_instances_outlive_their_zygote_and_the_next_start_makes_a_new_one(
    tmp_path: Path,
) -> None:
    trained = models.train_sklearn(tmp_path / "model")

    async def scenario() -> None:
        backend = await _backend(tmp_path, SKLEARN)
        try:
            kept = await backend.start(_spec("kept-1", trained.folder))
            lost = await backend.start(_spec("lost-1", trained.folder))
            await asyncio.gather(_healthy(kept), _healthy(lost))
            old = backend.zygote_pid(SKLEARN)
            assert old is not None
            assert kept.pid is not None
            assert lost.pid is not None
            os.kill(old, signal.SIGKILL)
            while _alive(old):
                await asyncio.sleep(0.02)
            # its instances keep serving and are still watched
            assert await _post(kept, trained.rows.tolist()) == trained.expected.tolist()
            assert backend.exit_reason("kept-1") is None
            os.kill(lost.pid, signal.SIGKILL)
            reason = await _exit_reason(backend, "lost-1")
            assert "with a status nobody could read" in reason, reason
            # the next instance is spawned and starts a new zygote, which forks the next ones
            spawned = await backend.start(_spec("spawned-1", trained.folder))
            new = backend.zygote_pid(SKLEARN)
            assert new is not None
            assert new != old
            await _healthy(spawned)
            assert spawned.pid is not None
            assert _parent(spawned.pid) == os.getpid()
            await backend.zygotes_ready()
            fresh = await backend.start(_spec("fresh-1", trained.folder))
            await _healthy(fresh)
            assert fresh.pid is not None
            assert _parent(fresh.pid) == new
            # an orphan of the dead zygote stops like any other instance
            await backend.stop("kept-1", 5.0)
            assert not _alive(kept.pid)
        finally:
            await backend.close(5.0)

    asyncio.run(scenario())


def test_the_first_instance_of_a_runtime_is_spawned_while_its_zygote_starts(
    tmp_path: Path,
) -> None:
    """No start waits for a zygote: the first instance is spawned as before, the next ones
    (once the zygote has imported its libraries) are forked; ``prestart`` makes even the first
    a fork, and ``spawn`` starts no zygote."""
    trained = models.train_sklearn(tmp_path / "model")

    async def parents(start_method: StartMethod, prestart: bool) -> tuple[int | None, list[int]]:
        folder = tmp_path / f"{start_method}-{prestart}"
        backend = LocalBackend(folder / "logs", folder / "run", start_method=start_method)
        try:
            if prestart:
                # a name or an import string: one zygote; an image that names no runtime: none
                backend.prestart(["sklearn", SKLEARN, "no-such-image"])
                await backend.zygotes_ready()
            found = []
            for n in range(2):
                started = await backend.start(_spec(f"instance-{n}", trained.folder))
                await _healthy(started)
                assert started.pid is not None
                found.append(_parent(started.pid))
                await backend.zygotes_ready()
            return backend.zygote_pid(SKLEARN), found
        finally:
            await backend.close(5.0)

    zygote, found = asyncio.run(parents("fork", prestart=False))
    assert zygote is not None
    assert found == [os.getpid(), zygote]
    zygote, found = asyncio.run(parents("fork", prestart=True))
    assert zygote is not None
    assert found == [zygote, zygote]
    zygote, found = asyncio.run(parents("spawn", prestart=True))
    assert zygote is None
    assert found == [os.getpid(), os.getpid()]


def test_concurrent_starts_each_fork_their_own_instance(tmp_path: Path) -> None:
    """Starts under way together (a scale-out) share one zygote: each gets its own process,
    with its own socket and log; the zygote's folder may even be gone (a server's start clears
    its run dir)."""
    trained = models.train_sklearn(tmp_path / "model")

    async def scenario() -> None:
        backend = await _backend(tmp_path, SKLEARN)
        try:
            _remove(tmp_path / "run" / "zygotes")
            names = [f"many-{n}" for n in range(6)]
            started = await asyncio.gather(
                *(backend.start(_spec(name, trained.folder)) for name in names)
            )
            await asyncio.gather(*(_healthy(s) for s in started))
            zygote = backend.zygote_pid(SKLEARN)
            pids = [s.pid for s in started]
            assert len(set(pids)) == len(names)
            for name, instance in zip(names, started, strict=True):
                assert instance.pid is not None
                assert _parent(instance.pid) == zygote
                assert _files(instance.pid)[1] == str(backend.log_path(name))
                assert await _post(instance, trained.rows.tolist()) == trained.expected.tolist()
            await asyncio.gather(*(backend.stop(name, 5.0) for name in names))
            assert not [pid for pid in pids if pid is not None and _alive(pid)]
        finally:
            await backend.close(5.0)

    asyncio.run(scenario())


def test_an_instance_is_spawned_when_its_zygote_cannot_fork_safely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A library that starts a thread at import would leave every fork without it: the zygote
    says so and its runtime's instances are spawned, now and later."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    trained = models.train_sklearn(tmp_path / "model")

    async def scenario() -> None:
        backend = await _backend(tmp_path, SKLEARN)
        try:
            for n in range(2):
                started = await backend.start(_spec(f"threaded-{n}", trained.folder))
                await _healthy(started)
                assert started.pid is not None
                assert _parent(started.pid) == os.getpid()
            assert backend.zygote_pid(SKLEARN) is None
        finally:
            await backend.close(5.0)

    with caplog.at_level("WARNING", logger="shipway.compute.local"):
        asyncio.run(scenario())
    assert "is spawned, not forked: the zygote of" in caplog.text
    assert "cannot fork safely: the zygote runs 2 threads" in caplog.text


def test_an_instance_setting_a_variable_read_at_process_start_is_spawned(
    tmp_path: Path,
) -> None:
    trained = models.train_sklearn(tmp_path / "model")

    async def scenario() -> tuple[int, int]:
        backend = await _backend(tmp_path, SKLEARN)
        try:
            plain = await backend.start(_spec("plain-1", trained.folder))
            tuned = await backend.start(
                _spec("tuned-1", trained.folder, environment={"MALLOC_ARENA_MAX": "2"})
            )
            await asyncio.gather(_healthy(plain), _healthy(tuned))
            assert plain.pid is not None
            assert tuned.pid is not None
            assert _environ(tuned.pid)["MALLOC_ARENA_MAX"] == "2"
            return _parent(plain.pid), _parent(tuned.pid)
        finally:
            await backend.close(5.0)

    plain, tuned = asyncio.run(scenario())
    assert plain != os.getpid()  # forked
    assert tuned == os.getpid()  # spawned


def test_kill_9_of_the_server_takes_its_zygote_and_forked_instances_along(
    tmp_path: Path,
) -> None:
    trained = models.train_sklearn(tmp_path / "model")
    server = start_server(tmp_path / "home")
    try:
        # the first instance of a runtime is spawned, and starts its zygote
        deploy(server, "first", str(trained.folder), "sklearn")
        zygote_log = server.home / "logs" / f"zygote-{SKLEARN.replace(':', '-')}.log"
        deadline = time.monotonic() + 60
        while " ready (pid " not in (_read(str(zygote_log)) if zygote_log.exists() else ""):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        deploy(server, "forked", str(trained.folder), "sklearn", variants=[("AllTraffic", 2, 1)])
        with server.client() as client:
            assert invoke_json(client, "forked", trained.rows).json() == trained.expected.tolist()
            found = client.get("/api/endpoints/forked/instances").json()["Instances"]
        pids = [int(i["Pid"]) for i in found]
        zygotes = {_parent(pid) for pid in pids}
        assert len(zygotes) == 1
        (zygote,) = zygotes
        assert server.process is not None
        assert _parent(zygote) == server.process.pid
        assert b"shipway.compute.zygote" in _cmdline(zygote)
    finally:
        server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in [zygote, *pids]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(zygote), "the zygote outlived its server"
    assert not any(_alive(pid) for pid in pids), "forked instances outlived their server"


def test_forked_instances_share_the_zygotes_memory(tmp_path: Path) -> None:
    """What the zygote imported is shared, copy-on-write, by every instance: an instance's
    proportional share (PSS) is well below its resident size."""
    trained = models.train_sklearn(tmp_path / "model")

    async def scenario() -> tuple[int, int]:
        backend = await _backend(tmp_path, SKLEARN)
        try:
            started = [await backend.start(_spec(f"shared-{n}", trained.folder)) for n in range(2)]
            await asyncio.gather(*(_healthy(s) for s in started))
            assert started[0].pid is not None
            return _rollup(started[0].pid)
        finally:
            await backend.close(5.0)

    rss, pss = asyncio.run(scenario())
    assert pss < 0.6 * rss, (rss, pss)


def _rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of a process in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields["Rss"], fields["Pss"]


AFTER_PRELOAD = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    import numpy as np

    from shipway.compute.zygote import runtime_modules, _preload
    from shipway.serving.runtime import load_runtime_class

    runtime, model_dir = sys.argv[1:]
    assert _preload(runtime_modules(runtime)) == []
    imported = []
    sys.addaudithook(
        lambda event, args: event == "import" and args[0] not in sys.modules
        and imported.append(args[0])
    )
    import uvicorn
    from shipway.serving.app import ModelServer

    model = load_runtime_class(runtime)(Path(model_dir), {}, threads=1)
    app = ModelServer(model, "m")
    asyncio.run(app.load())
    uvicorn.Config(app, loop="none", http="httptools", ws="none", lifespan="off").load()
    model.predict(np.zeros((1, 30)))
    print(json.dumps(sorted(set(imported))))
    """
)


def test_after_the_zygotes_imports_serving_a_model_imports_nothing_more(tmp_path: Path) -> None:
    """The preload list is complete for scikit-learn: an instance's start is its model's load."""
    trained = models.train_sklearn(tmp_path / "model")
    done = subprocess.run(
        [sys.executable, "-c", AFTER_PRELOAD, SKLEARN, str(trained.folder)],
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []
