"""The ``local`` compute backend: each instance is a model-server process on this machine.

The backend binds each instance's listening sockets itself (a TCP port on loopback for the
container contract, a Unix socket for the router) and hands them to the child, so ports are never
raced for and the address is known before the child has imported anything. Thread pools (OpenMP,
MKL, OpenBLAS, the runtime's own) are sized from the instance type, capped by this machine's
cores. Output goes to ``<log_dir>/<instance_id>.log``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shipway.compute.backend import InstanceSpec, StartedInstance

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@dataclass
class _Process:
    popen: subprocess.Popen[bytes]
    log_path: Path
    failure_path: Path
    socket_path: Path
    log_file: IO[bytes]


class LocalBackend:
    def __init__(self, log_dir: Path, *, python: str = sys.executable) -> None:
        self._log_dir = log_dir
        self._python = python
        self._processes: dict[str, _Process] = {}
        # Unix socket paths must stay under ~108 bytes: keep them in a short private folder.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="shipway-"))

    async def start(self, spec: InstanceSpec) -> StartedInstance:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1024)
        socket_path = self._socket_dir / f"{spec.instance_id}.sock"
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(socket_path))
        unix.listen(1024)
        port = tcp.getsockname()[1]
        log_path = self._log_dir / f"{spec.instance_id}.log"
        failure_path = self._log_dir / f"{spec.instance_id}.failure"
        failure_path.unlink(missing_ok=True)
        threads = spec.instance_type.threads()
        env = {**os.environ, **spec.environment}
        for name in THREAD_VARIABLES:
            env[name] = str(threads)
        env["SAGEMAKER_BIND_TO_PORT"] = str(port)
        command = [
            self._python,
            "-m",
            "shipway.serving",
            "--runtime", spec.runtime,
            "--model-dir", str(spec.model_dir),
            "--model-name", spec.model_name,
            "--fd", str(tcp.fileno()),
            "--uds-fd", str(unix.fileno()),
            "--threads", str(threads),
            "--max-batch-size", str(spec.max_batch_size),
            "--max-batch-delay-ms", str(spec.max_batch_delay_ms),
            "--failure-file", str(failure_path),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        log_file = log_path.open("ab")
        try:
            popen = subprocess.Popen(  # noqa: ASYNC220 - fork+exec, a few ms
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(tcp.fileno(), unix.fileno()),
                start_new_session=True,  # a Ctrl-C at the terminal reaches the server, not these
            )
        except Exception:
            log_file.close()
            socket_path.unlink(missing_ok=True)
            raise
        finally:
            tcp.close()
            unix.close()
        self._processes[spec.instance_id] = _Process(
            popen, log_path, failure_path, socket_path, log_file
        )
        log.info("started instance %s (pid %d, port %d)", spec.instance_id, popen.pid, port)
        return StartedInstance(address=f"unix:{socket_path}", port=port, pid=popen.pid)

    def exit_reason(self, instance_id: str) -> str | None:
        process = self._processes.get(instance_id)
        if process is None:
            return "the instance is not running"
        code = process.popen.poll()
        if code is None:
            return None
        if process.failure_path.exists():
            return process.failure_path.read_text(errors="replace").strip()[:1000]
        if code < 0:
            return f"the instance process was killed by signal {signal.Signals(-code).name}"
        return f"the instance process exited with status {code}{_tail(process.log_path)}"

    async def stop(self, instance_id: str, grace_seconds: float) -> None:
        process = self._processes.pop(instance_id, None)
        if process is None:
            return
        popen = process.popen
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_seconds
            while popen.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if popen.poll() is None:
                log.warning(
                    "instance %s ignored SIGTERM for %.0f s; killing", instance_id, grace_seconds
                )
                popen.kill()
                await asyncio.to_thread(popen.wait)
        process.log_file.close()
        process.socket_path.unlink(missing_ok=True)
        log.info("stopped instance %s", instance_id)

    async def close(self, grace_seconds: float) -> None:
        await asyncio.gather(*(self.stop(i, grace_seconds) for i in list(self._processes)))
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def pid(self, instance_id: str) -> int | None:
        process = self._processes.get(instance_id)
        return None if process is None else process.popen.pid


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return (": " + " | ".join(text[-lines:]))[:800] if text else ""
