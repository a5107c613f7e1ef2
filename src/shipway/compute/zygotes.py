"""The server's side of the zygotes (:mod:`shipway.compute.zygote`): one per runtime, each asked
to fork that runtime's instances.

:class:`Zygotes` starts a runtime's zygote at the first instance of that runtime, or ahead
(:meth:`Zygotes.prestart`). Until it has imported its libraries, instances of its runtime are
spawned, as before there were zygotes (so the first instance of a runtime pays one spawn, and
no start ever waits for a zygote: the controller's loop awaits each start); from then on they
are forked. Each fork hands the zygote the instance's
listening socket, its log file and a channel through which the server then writes the
instance's :class:`~shipway.compute.zygote.ForkRequest`, which only the forked child reads.
What comes back is a :class:`ForkedProcess`: the child's pid and a pidfd for it, since the
server is not its parent. The zygote reaps its children and reports each exit status.

If a zygote dies, its instances keep running: they are still watched through their pidfds
(their exit status is then unknown) and stopped by signal, and the next instance of that runtime
starts a new zygote. A zygote that cannot fork safely (a library started a thread or kept a file
open while imported), or that does not start, sends its runtime's instances back to the spawn
path: :class:`ZygoteUnavailable` says why, and the backend logs it (:class:`ZygoteStarting`,
the ordinary case of a zygote still importing, at a lower level).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shipway.compute.zygote import ForkRequest

__all__ = ["ForkedProcess", "ZygoteStarting", "ZygoteUnavailable", "Zygotes"]

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 120.0
"""How long a zygote may take to import its runtime's libraries (torch takes seconds); one
slower is ended, and its runtime's instances spawned for a while."""
FORK_TIMEOUT_SECONDS = 10.0
RETRY_SECONDS = 30.0
"""After a zygote failed to start, how long its runtime's instances are spawned instead."""
_MAX_MESSAGE = 65536


class ZygoteUnavailable(Exception):
    """This instance cannot be forked (the message says why): spawn it."""


class ZygoteStarting(ZygoteUnavailable):
    """The runtime's zygote is still importing its libraries."""


class _Zygote:
    """One zygote process, as the server sees it: its control socket and what it reported."""

    def __init__(
        self, runtime: str, process: subprocess.Popen[bytes], control: socket.socket, log: Path
    ) -> None:
        self.runtime = runtime
        self.process = process
        self.control = control
        self.log_path = log
        self.started = time.monotonic()
        self.lock = asyncio.Lock()
        """One fork at a time: a request and its reply."""
        self.ready: dict[str, Any] | None = None
        self.gone = False
        """Its control socket has closed: it exited (or was retired)."""
        self.exits: dict[int, int] = {}
        """Wait statuses of reaped children, by pid, until their ForkedProcess reads them."""
        self._replies: dict[int, tuple[dict[str, Any], list[int]]] = {}
        self._forgotten: set[int] = set()

    def drain(self) -> None:
        """Read every message waiting (never blocks)."""
        while not self.gone:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, _MAX_MESSAGE, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self.gone = True
                return
            message: dict[str, Any] = json.loads(data)
            if "exited" in message:
                pid = int(message["exited"])
                if pid in self._forgotten:
                    self._forgotten.discard(pid)
                else:
                    self.exits[pid] = int(message["status"])
            elif "ready" in message:
                self.ready = message
            elif "forked" in message or "failed" in message:
                self._replies[int(message.get("forked", message.get("failed", -1)))] = (
                    message,
                    fds,
                )
                continue
            for fd in fds:
                os.close(fd)

    def alive(self) -> bool:
        self.drain()
        return not self.gone and self.process.poll() is None

    def forget(self, pid: int) -> None:
        """Its exit status will not be asked for (the instance is stopped and gone)."""
        if self.exits.pop(pid, None) is None and not self.gone:
            self._forgotten.add(pid)

    async def until_ready(self, timeout: float) -> bool:
        """Whether it is ready (it may be unforkable) within ``timeout``; False if it exits."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            if self.ready is not None:
                return True
            remaining = deadline - time.monotonic()
            if self.gone or self.process.poll() is not None or remaining <= 0:
                return False
            await _readable(self.control, min(remaining, 0.5))

    async def reply(self, number: int, timeout: float) -> tuple[dict[str, Any], list[int]]:
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            if (found := self._replies.pop(number, None)) is not None:
                return found
            if self.gone:
                raise ZygoteUnavailable(f"the zygote of {self.runtime} exited before it forked")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ZygoteUnavailable(
                    f"the zygote of {self.runtime} did not fork within {timeout:.0f} s"
                )
            await _readable(self.control, min(remaining, 0.5))

    def retire(self) -> None:
        """Close its control socket, which ends it (it leaves its children running)."""
        self.drain()
        self.gone = True
        self.control.close()
        for _, fds in self._replies.values():
            for fd in fds:
                os.close(fd)
        self._replies.clear()

    async def wait(self, timeout: float) -> None:
        """Until it has exited: killed after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.process.poll() is None:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


class ForkedProcess:
    """An instance forked by a zygote: not the server's child, so watched through a pidfd,
    with its exit status from the zygote that reaps it."""

    def __init__(self, pid: int, pidfd: int, zygote: _Zygote) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._zygote = zygote
        self._exited = False
        self._returncode: int | None = None

    def exited(self) -> bool:
        if self._exited:
            return True
        self._zygote.drain()
        status = self._zygote.exits.pop(self.pid, None)
        if status is not None:
            self._exited = True
            self._returncode = os.waitstatus_to_exitcode(status)
        elif self._zygote.gone and self._pidfd >= 0 and _ended(self._pidfd):
            self._exited = True  # reaped by whoever adopted it: its status is not known
        return self._exited

    @property
    def returncode(self) -> int | None:
        """As ``Popen.returncode`` (negative: killed by that signal), once exited; None while
        it runs, or when its zygote had gone before it exited (its status is lost)."""
        return self._returncode

    @property
    def status_lost(self) -> bool:
        return self._exited and self._returncode is None

    def send_signal(self, sig: int) -> None:
        if self._exited or self._pidfd < 0:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, sig)

    def close(self) -> None:
        """Stop watching it (its exit, if still to come, is not asked for)."""
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        if not self._exited:
            self._zygote.forget(self.pid)


class Zygotes:
    """The zygotes of one server, by runtime import string."""

    def __init__(
        self,
        *,
        python: str,
        environment: Mapping[str, str],
        folder: Path,
        log_dir: Path,
        ready_timeout: float = READY_TIMEOUT_SECONDS,
    ) -> None:
        """``environment`` is every zygote's (an instance's, less what is its own); ``folder``
        its working directory and ``HOME``; its output goes to ``log_dir/zygote-<runtime>.log``."""
        self._python = python
        self._environment = dict(environment)
        self._folder = folder
        self._log_dir = log_dir
        self._ready_timeout = ready_timeout
        self._zygotes: dict[str, _Zygote] = {}
        self._retired: list[_Zygote] = []
        self._refused: dict[str, str] = {}
        """Runtimes whose zygote said it cannot fork safely: spawned for the server's life."""
        self._retry: dict[str, tuple[float, str]] = {}
        self._numbers = itertools.count(1)

    @property
    def environment(self) -> Mapping[str, str]:
        return self._environment

    def prestart(self, runtimes: Iterable[str]) -> None:
        """Start the zygotes of these runtimes (import strings) now, without waiting for them."""
        for runtime in dict.fromkeys(runtimes):
            if runtime not in self._refused:
                with contextlib.suppress(ZygoteUnavailable):
                    self._running(runtime)

    def warming(self, runtime: str, within: float) -> bool:
        """Whether the runtime's zygote is still importing, started less than ``within``
        seconds ago (an instance started now would be spawned beside it)."""
        zygote = self._zygotes.get(runtime)
        return (
            zygote is not None
            and zygote.alive()
            and zygote.ready is None
            and time.monotonic() - zygote.started < within
        )

    def pid(self, runtime: str) -> int | None:
        """The pid of the runtime's zygote, while it runs."""
        zygote = self._zygotes.get(runtime)
        return zygote.process.pid if zygote is not None and zygote.alive() else None

    async def until_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Until every zygote started is ready, or has failed (for benchmarks and tests: the
        backend itself never waits for one)."""
        zygotes = list(self._zygotes.values())
        await asyncio.gather(*(zygote.until_ready(timeout) for zygote in zygotes))

    async def fork(
        self, runtime: str, request: ForkRequest, listen: socket.socket, log_fd: int
    ) -> ForkedProcess:
        """Fork an instance of ``runtime`` from its zygote, if it has one ready; it starts one
        if it has none (:class:`ZygoteStarting`)."""
        if (reason := self._refused.get(runtime)) is not None:
            raise ZygoteUnavailable(reason)
        zygote = self._running(runtime)
        zygote.drain()
        if zygote.ready is None:
            if time.monotonic() - zygote.started > self._ready_timeout:
                why = f"the zygote of {runtime} was not ready within {self._ready_timeout:.0f} s"
                self._retry[runtime] = (time.monotonic() + RETRY_SECONDS, why)
                self._retire(zygote)
                raise ZygoteUnavailable(why)
            raise ZygoteStarting(f"the zygote of {runtime} is still importing its libraries")
        if not zygote.ready.get("forkable"):
            reason = f"the zygote of {runtime} cannot fork safely: {zygote.ready.get('why')}"
            self._refused[runtime] = reason
            self._retire(zygote)
            raise ZygoteUnavailable(reason)
        async with zygote.lock:
            try:
                return await self._fork(zygote, request, listen, log_fd)
            except ZygoteUnavailable:
                self._retire(zygote)
                raise

    async def _fork(
        self, zygote: _Zygote, request: ForkRequest, listen: socket.socket, log_fd: int
    ) -> ForkedProcess:
        number = next(self._numbers)
        ours, theirs = socket.socketpair()
        try:
            try:
                socket.send_fds(
                    zygote.control,
                    [json.dumps({"fork": number}).encode()],
                    [listen.fileno(), log_fd, theirs.fileno()],
                )
            except OSError as exc:
                raise ZygoteUnavailable(
                    f"the zygote of {zygote.runtime} took no request: {exc}"
                ) from exc
            finally:
                theirs.close()
            ours.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(
                    loop.sock_sendall(ours, request.to_json()), FORK_TIMEOUT_SECONDS
                )
            except (OSError, TimeoutError) as exc:
                raise ZygoteUnavailable(
                    f"the instance forked by the zygote of {zygote.runtime} did not read its "
                    f"request: {exc!r}"
                ) from exc
        finally:
            ours.close()
        message, fds = await zygote.reply(number, FORK_TIMEOUT_SECONDS)
        if "forked" not in message or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise ZygoteUnavailable(
                f"the zygote of {zygote.runtime} could not fork: {message.get('error')}"
            )
        return ForkedProcess(int(message["pid"]), fds[0], zygote)

    def _running(self, runtime: str) -> _Zygote:
        """The runtime's zygote, started if it has none (or it died)."""
        zygote = self._zygotes.get(runtime)
        if zygote is not None:
            if zygote.alive():
                return zygote
            self._retire(zygote)
            if zygote.ready is None:
                why = f"the zygote of {runtime} exited while it started (see {zygote.log_path})"
                self._retry[runtime] = (time.monotonic() + RETRY_SECONDS, why)
            else:
                log.warning(
                    "the zygote of %s (pid %d) has exited (%s): its instances keep running, and "
                    "another starts", runtime, zygote.process.pid, zygote.log_path,
                )  # fmt: skip
        until, why = self._retry.get(runtime, (0.0, ""))
        if time.monotonic() < until:
            raise ZygoteUnavailable(why)
        zygote = self._start(runtime)
        self._zygotes[runtime] = zygote
        return zygote

    def _start(self, runtime: str) -> _Zygote:
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = self._log_dir / f"zygote-{re.sub(r'[^A-Za-z0-9_.-]', '-', runtime)}.log"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log_file = open(  # noqa: SIM115 - the zygote writes to it; ours closes at once
            os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
        )
        try:
            # the kernel kills the zygote when the thread that started it ends
            # (PR_SET_PDEATHSIG): this is the event loop's thread, which lives as the server
            command = [
                self._python, "-m", "shipway.compute.zygote",
                "--runtime", runtime,
                "--control-fd", str(theirs.fileno()),
                "--parent-pid", str(os.getpid()),
            ]  # fmt: skip
            process = subprocess.Popen(
                command,
                env=self._environment,
                cwd=self._folder,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except Exception:
            ours.close()
            raise
        finally:
            theirs.close()
            log_file.close()
        ours.setblocking(False)
        log.info("started the zygote of %s (pid %d)", runtime, process.pid)
        return _Zygote(runtime, process, ours, log_path)

    def _retire(self, zygote: _Zygote) -> None:
        if self._zygotes.get(zygote.runtime) is zygote:
            del self._zygotes[zygote.runtime]
        zygote.retire()
        self._retired.append(zygote)

    async def close(self, grace_seconds: float = 5.0) -> None:
        """End every zygote (their instances are the backend's to stop)."""
        for zygote in list(self._zygotes.values()):
            self._retire(zygote)
        await asyncio.gather(*(z.wait(grace_seconds) for z in self._retired))
        self._retired.clear()


async def _readable(sock: socket.socket, timeout: float) -> None:
    """Until ``sock`` has something to read (or has closed), or ``timeout`` has passed."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready, timeout)
    finally:
        loop.remove_reader(fd)


def _ended(pidfd: int) -> bool:
    """Whether the process behind a pidfd has exited (its pidfd reads as readable)."""
    return bool(select.select([pidfd], [], [], 0)[0])
