"""Run one model server: ``python -m shipway.serving --runtime sklearn --model-dir D --port 8080``.

The compute backend starts instances this way, handing over listening sockets it bound itself
(``--fd``, ``--uds-fd``) so no port is ever raced for, or forks them from a zygote
(:mod:`shipway.compute.zygote`), which parses the same arguments and calls :func:`run` in the
forked process. The server answers ``/ping`` with 503 while
the model loads; if loading fails it writes the reason to ``--failure-file`` (as SageMaker's
``/opt/ml/output/failure``) and exits with status 3. It stops gracefully on SIGTERM, finishing the
requests in flight, and stops by itself when the process that started it (``--parent-pid``) goes.

With ``--predict-timeout``, a watchdog thread stops the server (status 4, the reason in the
failure file) once a request has waited for the model longer than that: a hung model is
replaced instead of holding every later request. It runs beside the event loop, so a predict
call that blocks the loop is caught too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn

from shipway.serving.app import ModelServer
from shipway.serving.runtime import load_runtime_class, resolve_runtime

log = logging.getLogger("shipway.serving")

LOAD_FAILED = 3
HUNG = 4
WATCHDOG_GRACE_SECONDS = 1.0
"""Past the timeout, before the watchdog acts: the router answers the caller first."""


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The model server's command line (``None``: ``sys.argv``); defaults read the
    environment (``SAGEMAKER_CONTAINER_LOG_LEVEL``), so parse once the environment is the
    instance's."""
    parser = argparse.ArgumentParser(prog="python -m shipway.serving", description=__doc__)
    parser.add_argument("--runtime", required=True, help="runtime name or package.module:Class")
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--model-name", default="model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="listen on this TCP port")
    parser.add_argument("--fd", type=int, help="an inherited listening TCP socket")
    parser.add_argument("--uds-fd", type=int, help="an inherited listening Unix socket")
    parser.add_argument("--threads", type=int, default=1, help="compute threads for the model")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-batch-delay-ms", type=float, default=0.0)
    parser.add_argument("--failure-file", type=Path)
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--graceful-timeout", type=float, default=30.0)
    parser.add_argument(
        "--predict-timeout", type=float, help="seconds after which a waiting request means hung"
    )
    parser.add_argument(
        "--log-level", default=os.environ.get("SAGEMAKER_CONTAINER_LOG_LEVEL", "info")
    )
    return parser.parse_args(argv)


def _sockets(args: argparse.Namespace) -> list[socket.socket]:
    sockets = []
    if args.fd is not None:
        sockets.append(socket.socket(fileno=args.fd))
    if args.uds_fd is not None:
        sockets.append(socket.socket(fileno=args.uds_fd))
    if args.port is not None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(1024)
        sockets.append(sock)
    if not sockets:
        raise SystemExit("give --port, --fd or --uds-fd: where to listen")
    return sockets


async def _watch_parent(parent_pid: int, server: uvicorn.Server) -> None:
    """Stop when the server that started this instance goes. A spawned instance is its child
    (its parent changes when it dies); a forked one is the zygote's, and watches the server
    through a pidfd (which, unlike a pid, never names another process later)."""
    if os.getppid() == parent_pid:
        while os.getppid() == parent_pid:
            if server.should_exit:
                return
            await asyncio.sleep(1.0)
    else:
        try:
            pidfd = os.pidfd_open(parent_pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is not None:
            try:
                while not select.select([pidfd], [], [], 0)[0]:  # readable once it has exited
                    if server.should_exit:
                        return
                    await asyncio.sleep(1.0)
            finally:
                os.close(pidfd)
    log.warning("parent process %d is gone; stopping", parent_pid)
    server.should_exit = True


def _watchdog(app: ModelServer, timeout: float, failure_file: Path | None) -> None:
    """Stop the process once a request has waited for the model past ``timeout``."""
    while True:
        waited = app.longest_in_flight()
        if waited > timeout + WATCHDOG_GRACE_SECONDS:
            reason = (
                f"the model did not answer a request within the invocation timeout of "
                f"{timeout:g} seconds (it had run for {waited:.0f} s): the model is hung, so the "
                "instance was stopped to be replaced"
            )
            log.error(reason)
            if failure_file is not None:
                with contextlib.suppress(OSError):
                    failure_file.write_text(reason)
            os._exit(HUNG)
        time.sleep(min(0.25, timeout / 4))


async def _load(app: ModelServer, server: uvicorn.Server, args: argparse.Namespace) -> None:
    try:
        await app.load()
    except Exception:
        log.exception("the model failed to load")
        if args.failure_file is not None:
            args.failure_file.write_text(app.failure or "the model failed to load")
        server.should_exit = True
        return
    log.info("model %s loaded", args.model_name)


async def _serve(args: argparse.Namespace) -> int:
    runtime_class = load_runtime_class(resolve_runtime(args.runtime))
    runtime = runtime_class(args.model_dir, dict(os.environ), threads=args.threads)
    app = ModelServer(
        runtime,
        args.model_name,
        max_batch_size=args.max_batch_size,
        max_batch_delay=args.max_batch_delay_ms / 1000.0,
        default_accept=os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json"),
    )
    config = uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        ws="none",  # no WebSocket route: and no import of websockets/wsproto at every start
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(args.graceful_timeout),
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    if args.predict_timeout:
        threading.Thread(
            target=_watchdog,
            args=(app, args.predict_timeout, args.failure_file),
            name="shipway-watchdog",
            daemon=True,
        ).start()
    background = [asyncio.create_task(_load(app, server, args))]
    if args.parent_pid:
        background.append(asyncio.create_task(_watch_parent(args.parent_pid, server)))
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then raises the signal again: the
    # handler below turns that into a clean exit.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        await server.serve(sockets=_sockets(args))
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for task in background:
            task.cancel()
        await app.close()
    return LOAD_FAILED if app.failure is not None else 0


class _Stopped(Exception):
    pass


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


def main(argv: list[str] | None = None) -> int:
    """``python -m shipway.serving``: the sandbox launcher says what it enforced in
    ``SHIPWAY_SANDBOX``, which goes to the log and out of the model's environment."""
    args = parse_arguments(argv)
    return run(args, sandbox=os.environ.pop("SHIPWAY_SANDBOX", None))


def run(args: argparse.Namespace, *, sandbox: str | None = None) -> int:
    """Serve until stopped, in this process; the exit status (3: the model failed to load).
    ``sandbox`` is what confines this process, logged first."""
    # SAGEMAKER_CONTAINER_LOG_LEVEL is a number ("20") as the SageMaker SDK sets it, or a name
    level = str(args.log_level)
    logging.basicConfig(
        level=int(level) if level.isdigit() else level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,  # a forked instance drops its zygote's logging
    )
    if sandbox:
        log.info(sandbox)
    try:
        import uvloop

        return uvloop.run(_serve(args))
    except ImportError:
        return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
