"""The zygote: a pre-started parent that forks instances, so an instance pays only for its model.

The local backend (:mod:`shipway.compute.zygotes`) starts one zygote per runtime::

    python -m shipway.compute.zygote --runtime IMPORT_STRING --control-fd N --parent-pid P

with the clean environment of an instance (``/proc/<pid>/environ`` of a forked process shows the
zygote's initial environment, so it must hold nothing an instance may not see) and one thread
for OpenMP and BLAS. It imports the model server stack and the runtime's libraries, each import
that fails is skipped (the instance meets it again when it loads its model and fails with the
same reason as a spawned one), then checks that it is still single-threaded and holds no file
but its standard streams and its control socket: a fork copies only the calling thread, and a
library's thread or file would be missing or closed in every instance. Only then does it say
it is ready, with ``forkable`` False when it is not (the backend then spawns that runtime's
instances). It imports the runtimes that ship with Shipway only: a user's runtime class is
imported by each instance, inside its sandbox.

**The control socket** (``SOCK_SEQPACKET``, one JSON message per packet) carries:

- server to zygote: ``{"fork": id}`` with three file descriptors: the instance's listening
  socket, its log file, and a channel through which the server then writes the instance's
  :class:`ForkRequest` (policy, model server arguments, environment, working directory,
  threads). The zygote never reads the request: only the forked child does, so no instance's
  environment (a model's secrets) ever lies in the zygote's memory, which every later
  instance inherits;
- zygote to server: ``{"ready": pid, "forkable": bool, "why": text, "missing": [...]}`` once;
  ``{"forked": id, "pid": pid}`` with a pidfd of the child (the server watches a process that
  is not its child without racing pid reuse); ``{"failed": id, "error": text}``;
  ``{"exited": pid, "status": wait status}`` for each child it reaped.

**A forked child** starts a session of its own, writes to its log, reads its request, keeps only
its listening socket (as fd 3) of the zygote's files, takes the instance's environment and
working directory, applies the same :func:`shipway.compute.sandbox.apply` as the sandbox launcher
(single-threaded, so Landlock covers every thread it starts later), sizes its thread pools from
its instance type, and runs the model server in-process (:func:`shipway.serving.__main__.run`).

The zygote dies with the server: the kernel kills it when its parent goes (``PR_SET_PDEATHSIG``)
and it leaves when its control socket closes. Its children do not: they watch the server
themselves (the model server's ``--parent-pid``), and keep running if the zygote is killed.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from shipway.compute import sandbox
from shipway.compute.pages import release_read_only_file_pages
from shipway.serving.runtime import RUNTIMES

__all__ = ["LISTEN_FD", "PRELOADS", "SERVING_STACK", "ForkRequest", "main", "runtime_modules"]

log = logging.getLogger("shipway.compute.zygote")

LISTEN_FD = 3
"""Where a forked instance finds its listening socket (the model server's ``--uds-fd``)."""

SERVING_STACK = (
    "shipway.serving.__main__",
    "shipway.serving.app",
    "shipway.serving.codecs",
    "shipway.serving.images",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.off",
    "uvloop",
    "threadpoolctl",
)
"""What every instance imports before its model: the model server and its HTTP stack."""

_SKLEARN = (
    "numpy",
    "scipy",
    "pandas",
    "joblib",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.tree",
    "sklearn.ensemble",
)
_CONTAINERS = "shipway.serving.runtimes.python"
PRELOADS: dict[str, tuple[str, ...]] = {
    RUNTIMES["sklearn"]: _SKLEARN,
    RUNTIMES["xgboost"]: (*_SKLEARN, "xgboost"),
    RUNTIMES["lightgbm"]: (*_SKLEARN, "lightgbm"),
    # onnxruntime starts a thread and opens a database of its own when imported: each
    # instance imports it
    RUNTIMES["onnx"]: ("numpy",),
    RUNTIMES["torch"]: ("numpy", "torch"),
    RUNTIMES["mlflow"]: ("numpy", "pandas", "mlflow.pyfunc"),
    # an inference.py most often holds a scikit-learn model
    RUNTIMES["python"]: _SKLEARN,
    f"{_CONTAINERS}:ScikitLearnContainer": _SKLEARN,
    f"{_CONTAINERS}:XGBoostContainer": (*_SKLEARN, "xgboost"),
    f"{_CONTAINERS}:PyTorchContainer": ("numpy", "torch"),
}
"""The libraries each runtime that ships with Shipway (by import string: the named runtimes
and SageMaker's framework images) imports when it loads a model."""

_PR_SET_PDEATHSIG = 1
_MAX_MESSAGE = 65536
_FD_DIR = "/proc/self/fd"


@dataclass(frozen=True)
class ForkRequest:
    """One instance, as the forked child needs it (what the spawn path's command line and
    ``Popen`` arguments carry)."""

    policy: str
    """The :class:`~shipway.compute.sandbox.SandboxPolicy`, as JSON."""
    serving: tuple[str, ...]
    """The model server's arguments (``python -m shipway.serving``'s), but ``--uds-fd``."""
    environment: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    threads: int = 1

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "policy": self.policy,
                "serving": list(self.serving),
                "environment": self.environment,
                "cwd": self.cwd,
                "threads": self.threads,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ForkRequest:
        fields = json.loads(data)
        return cls(
            policy=fields["policy"],
            serving=tuple(fields["serving"]),
            environment=dict(fields["environment"]),
            cwd=fields["cwd"],
            threads=int(fields["threads"]),
        )


def runtime_modules(runtime: str) -> tuple[str, ...]:
    """What a zygote of ``runtime`` (an import string) imports: the model server stack, then,
    for a runtime that ships with Shipway, its module and libraries."""
    if runtime not in PRELOADS:
        return SERVING_STACK
    return (*SERVING_STACK, runtime.partition(":")[0], *PRELOADS[runtime])


def _preload(modules: Sequence[str]) -> list[str]:
    """Import ``modules``; what could not be imported, and why."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an optional extra not installed, or broken: skipped
            missing.append(f"{module} ({type(exc).__name__}: {exc})")
    return missing


def _unforkable(control: int) -> str | None:
    """Why forking this process would hand instances a broken copy, if it would."""
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:
        return f"the zygote runs {threads} threads after its imports (a fork copies one)"
    opened = []
    for name in os.listdir(_FD_DIR):
        fd = int(name)
        if fd in (0, 1, 2, control):
            continue
        try:
            opened.append(os.readlink(f"{_FD_DIR}/{name}"))
        except OSError:
            continue  # the listing's own descriptor, closed by now
    if opened:
        return f"the zygote holds files its libraries opened: {', '.join(sorted(opened))}"
    return None


@dataclass(frozen=True)
class _Handed:
    """What a forked child received: its listening socket, log and request channel."""

    listen: int
    log: int
    channel: int


class _Zygote:
    """The zygote's loop: fork on request, reap children, tell the server about both."""

    def __init__(self, control: socket.socket) -> None:
        control.setblocking(False)
        self._control = control
        self._selector = selectors.DefaultSelector()
        self._selector.register(control, selectors.EVENT_READ)
        self._children: dict[int, int] = {}
        """pidfd: pid of each child not reaped yet."""
        self._outbox: deque[tuple[bytes, list[int]]] = deque()

    def send(self, message: dict[str, object], fds: Sequence[int] = ()) -> None:
        """Queue a message (the fds are closed once sent) and send what the socket takes."""
        self._outbox.append((json.dumps(message).encode(), list(fds)))
        self._flush()

    def serve(self) -> _Handed | None:
        """Until the server goes (None), or, in a forked child, what it was handed."""
        while True:
            for key, events in self._selector.select():
                if key.fileobj is self._control:
                    if events & selectors.EVENT_WRITE:
                        self._flush()
                    if events & selectors.EVENT_READ:
                        handed = self._receive()
                        if handed is None:
                            return None
                        if isinstance(handed, _Handed):
                            return handed
                else:
                    self._reap(key.fd)

    def _receive(self) -> _Handed | bool | None:
        """Handle every request waiting: the forked child's handover (in the child), None
        when the server has gone, True otherwise."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._control, _MAX_MESSAGE, 3)
            except BlockingIOError:
                return True
            except OSError:
                return None
            if not data:
                return None
            handed = self._fork(json.loads(data), fds)
            if handed is not None:
                return handed

    def _fork(self, message: dict[str, int], fds: list[int]) -> _Handed | None:
        number = message.get("fork")
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            self.send({"failed": number, "error": f"{len(fds)} file descriptors, not 3"})
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            self.send({"failed": number, "error": f"fork: {exc}"})
            return None
        if pid == 0:
            self._leave()
            return _Handed(*fds)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self._children[pidfd] = pid
        self._selector.register(pidfd, selectors.EVENT_READ)
        self.send({"forked": number, "pid": pid}, [os.dup(pidfd)])
        return None

    def _leave(self) -> None:
        """In a forked child: let go of the zygote's loop without closing anything twice later
        (the child closes every descriptor it does not need by number)."""
        self._selector.close()
        self._control.detach()
        self._children.clear()
        self._outbox.clear()

    def _reap(self, pidfd: int) -> None:
        pid = self._children.pop(pidfd)
        self._selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)  # it has exited: this does not block
        self.send({"exited": pid, "status": status})

    def _flush(self) -> None:
        while self._outbox:
            data, fds = self._outbox[0]
            try:
                if fds:
                    socket.send_fds(self._control, [data], fds)
                else:
                    self._control.send(data)
            except BlockingIOError:
                break
            except OSError:  # the server has gone: the next read says so
                self._outbox.clear()
                break
            self._outbox.popleft()
            for fd in fds:
                os.close(fd)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._outbox else 0)
        self._selector.modify(self._control, events)


def _become_instance(handed: _Handed, zygote_cwd: str) -> int:
    """In a forked child: turn into the instance it was forked for; its exit status."""
    gc.enable()
    os.setsid()
    os.dup2(handed.log, 1)
    os.dup2(handed.log, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    with open(handed.channel, "rb", closefd=False) as channel:
        request = ForkRequest.from_json(channel.read())
    os.dup2(handed.listen, LISTEN_FD)
    os.closerange(LISTEN_FD + 1, os.sysconf("SC_OPEN_MAX"))  # the zygote's files: none stays
    os.environ.clear()
    os.environ.update(request.environment)
    os.chdir(request.cwd)
    if sys.path and sys.path[0] == zygote_cwd:  # -m put the zygote's folder there
        sys.path[0] = request.cwd
    applied = sandbox.apply(sandbox.SandboxPolicy.from_json(request.policy))
    _size_thread_pools(request.threads)
    import shipway.serving.__main__ as serving

    argv = [*request.serving, "--uds-fd", str(LISTEN_FD)]
    sys.argv = [str(serving.__file__), *argv]  # as python -m shipway.serving would have it
    summary = f"{applied.summary()}; forked from a zygote"
    return serving.run(serving.parse_arguments(argv), sandbox=summary)


def _size_thread_pools(threads: int) -> None:
    """The zygote ran every pool at one thread; an instance gets its instance type's (the
    environment's ``OMP_NUM_THREADS`` & co. say the same to threads started later)."""
    if "numpy" in sys.modules:  # every instance would otherwise draw the zygote's numbers
        import numpy

        numpy.random.seed()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(limits=threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _die_with(parent_pid: int) -> None:
    """Be killed by the kernel when the server goes (and leave now if it already has)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(
        ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
        ctypes.c_ulong(0), ctypes.c_ulong(0),
    )  # fmt: skip
    if os.getppid() != parent_pid:
        raise SystemExit(f"the server (pid {parent_pid}) has gone")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shipway.compute.zygote")
    parser.add_argument("--runtime", required=True, help="the runtime's import string")
    parser.add_argument("--control-fd", type=int, required=True, help="the control socket")
    parser.add_argument("--parent-pid", type=int, required=True, help="the server's pid")
    args = parser.parse_args(argv)
    cwd = os.getcwd()  # where python -m started it (its folder may be removed while it runs)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _die_with(args.parent_pid)
    control = socket.socket(fileno=args.control_fd)
    # no collection while importing (it would leave freed holes in pages every fork copies),
    # and what was imported is frozen: a child's collections never write to those objects,
    # so their pages stay shared
    gc.disable()
    missing = _preload(runtime_modules(args.runtime))
    gc.freeze()
    # what the imports read once and no instance runs again: the kernel may have it back
    release_read_only_file_pages()
    for what in missing:
        log.info("not imported: %s", what)
    why = _unforkable(args.control_fd)
    if why is not None:
        log.warning("instances of %s cannot be forked: %s", args.runtime, why)
    zygote = _Zygote(control)
    zygote.send({"ready": os.getpid(), "forkable": why is None, "why": why, "missing": missing})
    log.info("zygote of %s ready (pid %d)", args.runtime, os.getpid())
    handed = zygote.serve()
    if handed is None:
        log.info("the server has gone; the zygote of %s leaves", args.runtime)
        return
    sys.exit(_become_instance(handed, cwd))


if __name__ == "__main__":
    main(sys.argv[1:])
