"""The ``local`` compute backend: each instance is a sandboxed model-server process here.

An instance is forked from its runtime's zygote (:mod:`shipway.compute.zygotes`), which has
imported the model server and the runtime's libraries already, so it pays only for loading its
model; or, with ``start_method="spawn"`` (and whenever forking is not possible, such as while its
runtime's zygote is still importing), spawned through the sandbox launcher. Both paths confine
the instance with the same sandbox policy.

The backend binds each instance's listening Unix socket itself, in a folder only the server can
enter, and hands it to the child: no port is raced for, the address is known before the child has
imported anything, and no other local user can reach an instance except through Shipway (there
is no TCP port). The child is confined by the sandbox (:mod:`shipway.compute.sandbox`)
with a clean environment (no Shipway settings, no secrets), its working directory, ``HOME`` and
``TMPDIR`` in a scratch folder of its own, and the kernel's limits from its instance type:
memory, CPU and processes in a control group (:mod:`shipway.compute.cgroups`) where the machine
lets the server make one; otherwise the backend pins the instance to as many cores as its
type's vCPUs and watches its memory itself. An instance over its memory is stopped, and
:meth:`LocalBackend.exit_reason` says so. Output goes to ``<log_dir>/<instance_id>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

from shipway.compute.backend import InstanceSpec, StartedInstance
from shipway.compute.cgroups import Cgroups, InstanceCgroup
from shipway.compute.sandbox import instance_policy
from shipway.compute.usage import InstanceProcesses, Usage, read_usage, session_memory
from shipway.compute.zygote import ForkRequest
from shipway.compute.zygotes import ForkedProcess, Zygotes, ZygoteStarting, ZygoteUnavailable
from shipway.domain.errors import ShipwayError

__all__ = ["LocalBackend", "StartMethod"]

log = logging.getLogger(__name__)

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
PASSED_VARIABLES = ("LANG", "LANGUAGE", "TZ", "PYTHONPATH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
"""What an instance keeps of the server's environment: locale, time zone, where Python finds
Shipway, and the machine-specific OpenBLAS settings that keep numpy correct. Nothing else: no
``SHIPWAY_*`` setting, no credentials."""
GIB = 1024**3
KILL_WAIT_SECONDS = 10.0
"""How long a SIGKILLed instance may take to be gone (a process in uninterruptible sleep)."""
MAX_PROCESSES = 4096
"""Processes and threads one instance may have at once (a fork bomb stops there)."""
IMPORT_TIME_PREFIXES = (
    "PYTHON", "LD_", "MALLOC_", "GLIBC_", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_",
    "NUMEXPR_", "CUDA_", "TORCH_", "JE_",
)  # fmt: skip
"""Variables that the interpreter, the C library or a numeric library read when the process
starts or a library loads: an instance whose environment sets one differently from its zygote's
is spawned, so that it takes effect (thread counts, set after the fork, excepted)."""
StartMethod = Literal["fork", "spawn"]
_SOCKET_PREFIX = "shipway-"
WARMING_SECONDS = 15.0
"""How long after a zygote started :meth:`LocalBackend.warming` says to wait for it (a runtime's
imports take 1 to 5 seconds): one that takes longer is not waited for."""
_ZYGOTE_FOLDER = "zygotes"
"""The zygotes' working directory and ``HOME``, in the run dir (instance ids have a dash and
a suffix, so no instance's scratch folder has this name)."""


class _InstanceProcess(Protocol):
    """A running instance's process, spawned (the server's child) or forked by a zygote."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def exited(self) -> bool: ...

    def send_signal(self, sig: int) -> None: ...

    def close(self) -> None: ...


class _Spawned:
    """An instance started through the sandbox launcher: the server's child."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def exited(self) -> bool:
        return self._popen.poll() is not None

    def send_signal(self, sig: int) -> None:
        self._popen.send_signal(sig)

    def close(self) -> None:
        """Nothing to release: ``exited()`` has reaped it."""


@dataclass
class _Process:
    process: _InstanceProcess
    log_path: Path
    failure_path: Path
    socket_path: Path
    scratch: Path
    log_file: IO[bytes]
    memory_limit: int | None
    instance_type: str
    cgroup: InstanceCgroup | None = None
    cpus: tuple[int, ...] = ()
    user: int | None = None
    stopped_for: list[str] = field(default_factory=list)
    """Why the backend itself stopped the process (over its memory), if it did."""


class LocalBackend:
    def __init__(
        self,
        log_dir: Path,
        run_dir: Path,
        *,
        network: bool = False,
        protected: Sequence[Path] = (),
        unchanging: Sequence[Path] = (),
        cgroups: bool = True,
        uid_base: int | None = None,
        python: str = sys.executable,
        start_method: StartMethod = "fork",
    ) -> None:
        """``run_dir`` holds the instances' scratch folders; ``network`` lets instances use
        the host's network; ``protected`` paths must stay out of every instance's reach;
        model folders under an ``unchanging`` folder (the artifact cache: content-keyed, written
        once) are checked for other users' access once, not at every instance start;
        ``cgroups`` False does without control groups even where they are writable; with
        ``uid_base``, a server running as root runs each instance as a user of its own
        (``uid_base``, ``uid_base + 1``...); ``start_method`` ``fork`` forks instances from a
        zygote per runtime, ``spawn`` starts a new interpreter for each."""
        self._log_dir = log_dir
        self._run_dir = run_dir
        self._network = network
        self._protected = [str(p) for p in protected]
        self._unchanging = [Path(p) for p in unchanging]
        self._open: dict[Path, bool] = {}
        self._python = python
        self._processes: dict[str, _Process] = {}
        _remove_stale_socket_folders()
        # Unix socket paths must stay under ~108 bytes: keep them in a short private folder,
        # named after this server so that a later one can tell it is stale.
        self._socket_dir = Path(tempfile.mkdtemp(prefix=f"{_SOCKET_PREFIX}{os.getpid()}-"))
        self._cgroups = Cgroups.detect() if cgroups else None
        self._uid_base = uid_base if os.geteuid() == 0 else None
        self._cores = sorted(os.sched_getaffinity(0))
        if self._cgroups is None:
            log.info("no writable cgroups: instances are pinned to cores and their memory watched")
        self._start_method = start_method
        zygote_folder = run_dir / _ZYGOTE_FOLDER
        self._zygotes = Zygotes(
            python=python,
            environment=self._base_environment(zygote_folder, threads=1),
            folder=zygote_folder,
            log_dir=log_dir,
        )

    @property
    def start_method(self) -> StartMethod:
        return self._start_method

    def prestart(self, runtimes: Iterable[str]) -> None:
        """Start the zygotes of these runtimes (names, images or import strings, as
        ``InstanceSpec.runtime`` or a container's ``Image``) now, so that even their first
        instance is a fork once they are ready. Returns at once (they import in the background,
        about a second each; instances started meanwhile are spawned); nothing with
        ``start_method="spawn"``. Call it from the event loop's thread: the kernel ends a
        zygote when the thread that started it ends."""
        if self._start_method != "fork":
            return
        from shipway.serving.runtime import resolve_runtime

        resolved = []
        for runtime in runtimes:
            try:
                resolved.append(resolve_runtime(runtime))
            except ShipwayError as exc:  # its instances will fail to start, and say why
                log.warning("no zygote for %r: %s", runtime, exc)
        self._zygotes.prestart(resolved)

    def warming(self, runtime: str) -> bool:
        """Whether an instance of ``runtime`` (an import string) started now would be spawned
        only because its zygote is still importing (for at most ``WARMING_SECONDS`` after it
        started): the caller may rather try again shortly, and fork it."""
        return self._start_method == "fork" and self._zygotes.warming(runtime, WARMING_SECONDS)

    async def zygotes_ready(self, timeout: float = 120.0) -> None:
        """Until the zygotes started so far are ready to fork (or have failed). The backend
        itself never waits for a zygote (an instance whose zygote is not ready is spawned): a
        server's start may, after :meth:`prestart`, so that the instances of its stored
        endpoints are forks (a second or so of imports, then tens of milliseconds each,
        instead of a second each); benchmarks and tests do."""
        await self._zygotes.until_ready(timeout)

    def zygote_pid(self, runtime: str) -> int | None:
        """The pid of a runtime's zygote (an import string), while it runs."""
        return self._zygotes.pid(runtime)

    async def _open_to_others(self, model_dir: Path) -> bool:
        """Whether other users may read the model folder (walked in a thread: a model may hold
        many files); remembered for folders that cannot change."""
        if (known := self._open.get(model_dir)) is not None:
            return known
        open_ = await asyncio.to_thread(_open_to_others, model_dir)
        if any(model_dir.is_relative_to(root) for root in self._unchanging):
            self._open[model_dir] = open_
        return open_

    async def start(self, spec: InstanceSpec) -> StartedInstance:
        self._log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch = self._run_dir / spec.instance_id
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700, parents=True)
        user = self._free_user()
        if user is not None and not await self._open_to_others(spec.model_dir):
            log.warning(
                "instance %s runs as user 0 (without capabilities), not a user of its own: its "
                "model folder %s is not readable by other users (chmod -R o+rX to change that)",
                spec.instance_id, spec.model_dir,
            )  # fmt: skip
            user = None
        if user is not None:
            os.chown(scratch, user, user)
        instance_type = spec.instance_type
        threads = instance_type.threads()
        memory = int(instance_type.memory_gib * GIB) or None
        cgroup = None
        cpus: tuple[int, ...] = ()
        if self._cgroups is not None:
            cgroup = self._cgroups.create(
                spec.instance_id,
                memory_bytes=memory,
                # a quota of every core this server may use limits nothing: none then
                cpus=float(threads) if threads < len(self._cores) else None,
                pids=MAX_PROCESSES,
            )
        else:
            cpus = self._pick_cores(threads)
        try:
            policy = instance_policy(
                model_dir=str(spec.model_dir),
                scratch=str(scratch),
                network=self._network and not spec.network_isolation,
                cpus=cpus,
                cgroup_procs=cgroup.procs if cgroup is not None else (),
                protected=self._protected,
                user=user,
            )
        except ValueError as exc:
            if cgroup is not None:
                cgroup.remove()
            raise ShipwayError(f"the instance cannot be sandboxed: {exc}") from exc
        socket_path = self._socket_dir / f"{spec.instance_id}.sock"
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(socket_path))
        unix.listen(1024)
        log_path = self.log_path(spec.instance_id)
        failure_path = scratch / "failure"
        env = self._environment(spec, scratch, threads)
        serving = [
            "--runtime", spec.runtime,
            "--model-dir", str(spec.model_dir),
            "--model-name", spec.model_name,
            "--threads", str(threads),
            "--max-batch-size", str(spec.max_batch_size),
            "--max-batch-delay-ms", str(spec.max_batch_delay_ms),
            "--failure-file", str(failure_path),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if spec.predict_timeout_seconds is not None:
            serving += ["--predict-timeout", str(spec.predict_timeout_seconds)]
        log_file = open(  # noqa: SIM115, ASYNC230 - the child writes to it until it stops
            os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
        )
        process: _InstanceProcess | None = None
        try:
            if self._start_method == "fork" and self._forkable(spec, env):
                request = ForkRequest(
                    policy=policy.to_json(),
                    serving=tuple(serving),
                    environment=env,
                    cwd=str(scratch),
                    threads=threads,
                )
                try:
                    process = await self._zygotes.fork(
                        spec.runtime, request, unix, log_file.fileno()
                    )
                except ZygoteStarting as exc:
                    log.info("instance %s is spawned, not forked: %s", spec.instance_id, exc)
                except ZygoteUnavailable as exc:
                    log.warning("instance %s is spawned, not forked: %s", spec.instance_id, exc)
            if process is None:
                command = [
                    self._python, "-m", "shipway.compute.sandbox", "--policy", policy.to_json(),
                    "--", self._python, "-m", "shipway.serving",
                    *serving, "--uds-fd", str(unix.fileno()),
                ]  # fmt: skip
                process = _Spawned(
                    subprocess.Popen(  # noqa: ASYNC220 - fork+exec, a few ms
                        command,
                        env=env,
                        cwd=scratch,
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        pass_fds=(unix.fileno(),),
                        start_new_session=True,  # a Ctrl-C at the terminal reaches the server
                    )
                )
        except BaseException:
            log_file.close()
            socket_path.unlink(missing_ok=True)
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            unix.close()
        self._processes[spec.instance_id] = _Process(
            process, log_path, failure_path, socket_path, scratch, log_file, memory,
            instance_type.name, cgroup, cpus, user,
        )  # fmt: skip
        how = "forked" if isinstance(process, ForkedProcess) else "spawned"
        log.info("started instance %s (pid %d, %s)", spec.instance_id, process.pid, how)
        return StartedInstance(address=f"unix:{socket_path}", port=None, pid=process.pid)

    def _forkable(self, spec: InstanceSpec, env: dict[str, str]) -> bool:
        """Whether a fork gives this instance the environment it asks for: not when it sets a
        variable that only takes effect when a process starts or a library loads."""
        zygote = self._zygotes.environment
        changed = sorted(
            name
            for name in {*env, *zygote}
            if name.startswith(IMPORT_TIME_PREFIXES)
            and name not in THREAD_VARIABLES
            and env.get(name) != zygote.get(name)
        )
        if changed:
            log.info(
                "instance %s is spawned, not forked: its environment sets %s, read only when a "
                "process starts", spec.instance_id, ", ".join(changed),
            )  # fmt: skip
        return not changed

    def _base_environment(self, home: Path, threads: int) -> dict[str, str]:
        """What every instance's environment has (and a zygote's is): no Shipway setting, no
        credentials."""
        env = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
        env.update(
            PATH="/usr/local/bin:/usr/bin:/bin",
            HOME=str(home),
            TMPDIR=str(home),
            JOBLIB_TEMP_FOLDER=str(home),
            PYTHONDONTWRITEBYTECODE="1",
            USER="model",  # its user has no name in /etc/passwd; getpass reads these first
            LOGNAME="model",
            # pyarrow's jemalloc (imported by pandas when installed) starts a background thread
            # when it loads: a zygote that imported pandas could then not fork
            JE_ARROW_MALLOC_CONF="background_thread:false",
        )
        for name in THREAD_VARIABLES:
            env[name] = str(threads)
        return env

    def _environment(self, spec: InstanceSpec, scratch: Path, threads: int) -> dict[str, str]:
        env = self._base_environment(scratch, threads)
        env.update(spec.environment)
        for name in THREAD_VARIABLES:
            env[name] = str(threads)
        return env

    def _free_user(self) -> int | None:
        """The lowest user id of the range no running instance has, or None (not root)."""
        if self._uid_base is None:
            return None
        taken = {p.user for p in self._processes.values()}
        return next(
            self._uid_base + n for n in range(len(taken) + 1) if self._uid_base + n not in taken
        )

    def _pick_cores(self, count: int) -> tuple[int, ...]:
        """The ``count`` cores the fewest instances are pinned to (no cgroup CPU limit)."""
        if count >= len(self._cores):
            return ()
        used = Counter(core for p in self._processes.values() for core in p.cpus)
        return tuple(sorted(sorted(self._cores, key=lambda core: (used[core], core))[:count]))

    def log_path(self, instance_id: str) -> Path:
        """``<log_dir>/<instance_id>.log``: the instance's stdout and stderr, kept after it
        stops (the ModelError an instance answers points here)."""
        return self._log_dir / f"{instance_id}.log"

    def exit_reason(self, instance_id: str) -> str | None:
        process = self._processes.get(instance_id)
        if process is None:
            return "the instance is not running"
        if not process.process.exited():
            self._watch_memory(instance_id, process)
            return None
        code = process.process.returncode
        limit = _gib(process.memory_limit)
        if process.stopped_for:
            return process.stopped_for[0]
        if process.cgroup is not None and process.cgroup.oom_kills():
            return (
                f"the instance ran out of memory: its processes used more than the {limit} of "
                f"its instance type {process.instance_type}, and the kernel stopped it"
            )
        if process.failure_path.exists():
            with contextlib.suppress(OSError):
                return process.failure_path.read_text(errors="replace").strip()[:1000]
        if code is None:
            return (
                "the instance process exited, with a status nobody could read: the zygote it "
                f"was forked from had stopped before it{_tail(process.log_path)}"
            )
        if code < 0:
            return f"the instance process was killed by signal {signal.Signals(-code).name}"
        return f"the instance process exited with status {code}{_tail(process.log_path)}"

    def _watch_memory(self, instance_id: str, process: _Process) -> None:
        """Without a memory cgroup: stop an instance whose processes outgrew its type."""
        if process.cgroup is not None or process.memory_limit is None:
            return
        used = session_memory(process.process.pid)
        if used <= process.memory_limit:
            return
        reason = (
            f"the instance ran out of memory: its processes used {_gib(used)}, more than the "
            f"{_gib(process.memory_limit)} of its instance type {process.instance_type}, and it "
            "was stopped"
        )
        log.warning("instance %s: %s", instance_id, reason)
        process.stopped_for.append(reason)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.process.pid, signal.SIGKILL)

    async def stop(self, instance_id: str, grace_seconds: float) -> None:
        process = self._processes.pop(instance_id, None)
        if process is None:
            return
        running = process.process
        if not running.exited():
            running.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_seconds
            while not running.exited() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if not running.exited():
                log.warning(
                    "instance %s ignored SIGTERM for %.0f s; killing", instance_id, grace_seconds
                )
                running.send_signal(signal.SIGKILL)
                deadline = loop.time() + KILL_WAIT_SECONDS
                while not running.exited() and loop.time() < deadline:
                    await asyncio.sleep(0.02)
        # whatever the model started and left behind goes with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.pid, signal.SIGKILL)
        running.close()
        if process.cgroup is not None:
            await asyncio.to_thread(process.cgroup.remove)
        process.log_file.close()
        process.socket_path.unlink(missing_ok=True)
        await asyncio.to_thread(shutil.rmtree, process.scratch, True)
        log.info("stopped instance %s", instance_id)

    async def close(self, grace_seconds: float) -> None:
        await asyncio.gather(*(self.stop(i, grace_seconds) for i in list(self._processes)))
        await self._zygotes.close()
        shutil.rmtree(self._run_dir / _ZYGOTE_FOLDER, ignore_errors=True)
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._cgroups is not None:
            self._cgroups.close()

    def usage(self) -> dict[str, Usage]:
        """CPU time and memory of each running instance (its cgroup's accounting, or every
        process of its session). Safe to call from a worker thread: it reads a copy of the
        table."""
        running = list(self._processes.items())
        return read_usage(
            {
                instance_id: InstanceProcesses(p.process.pid, p.cgroup, p.memory_limit)
                for instance_id, p in running
            }
        )

    def pid(self, instance_id: str) -> int | None:
        process = self._processes.get(instance_id)
        return None if process is None else process.process.pid


def _remove_stale_socket_folders() -> None:
    """Socket folders of servers that are gone (killed before they could clean up)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_SOCKET_PREFIX}[0-9]*-*"):
        pid = folder.name[len(_SOCKET_PREFIX) :].split("-", 1)[0]
        try:
            owned = folder.stat().st_uid == os.geteuid()
            os.kill(int(pid), 0)
        except ProcessLookupError:
            if owned:
                shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _open_to_others(folder: Path) -> bool:
    """Whether a user of no group the files are in may read everything in ``folder``."""
    for root, folders, files in os.walk(folder):
        for name in [root, *(os.path.join(root, f) for f in folders)]:
            if os.stat(name).st_mode & 0o005 != 0o005:
                return False
        for name in files:
            if not os.stat(os.path.join(root, name)).st_mode & 0o004:
                return False
    return True


def _gib(size: int | None) -> str:
    if size is None:
        return "unlimited memory"
    return f"{size / GIB:.2f} GiB" if size < 10 * GIB else f"{size / GIB:.0f} GiB"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return (": " + " | ".join(text[-lines:]))[:800] if text else ""
