"""A closed-loop HTTP/1.1 load generator that records every request: when it was sent and how
long its answer took.

h2load is not always installed, and a deployment's length is not known in advance (h2load runs
for a fixed time), so the deployment benchmark drives its load with this: ``connections``
kept-alive connections, each with one request in flight, on one asyncio loop (uvloop when it is
installed), the request bytes built once. It runs until its standard input is closed, then writes
one record per answered request to ``--out`` as native int64 triples::

    (sent at, time.monotonic_ns(); latency in ns; HTTP status, 0 for a connection error)

``time.monotonic_ns()`` reads CLOCK_MONOTONIC, the same clock in every process on the machine, so
the benchmark can cut the records into windows by the times it noted itself. It prints ``ready``
once every connection has had its first answer, and on exit one JSON line: the count, the CPU
seconds it used and the first few error messages.

    python bench/deployments/load.py --url http://127.0.0.1:8080/endpoints/e/invocations \\
        --body body.json --connections 8 --out records.bin
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_ERRORS_KEPT = 20


class Recorder:
    def __init__(self) -> None:
        self.records = array("q")
        self.errors: list[str] = []

    def add(self, sent: int, latency: int, status: int, error: str = "") -> None:
        self.records.extend((sent, latency, status))
        if error and len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(error)


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    chunked = False
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                break
            parts.append(await reader.readexactly(size + 2))
        body = b"".join(p[:-2] for p in parts)
    elif length >= 0:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()
        keep_alive = False
    return status, body, keep_alive


async def worker(
    host: str,
    port: int,
    payload: bytes,
    recorder: Recorder,
    stop: asyncio.Event,
    first: asyncio.Event,
    answered: list[int],
) -> None:
    clock = time.monotonic_ns
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    counted = False
    while not stop.is_set():
        sent = clock()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(payload)
            status, body, keep_alive = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            recorder.add(sent, clock() - sent, 0, f"{type(exc).__name__}: {exc}")
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)
            continue
        recorder.add(
            sent,
            clock() - sent,
            status,
            "" if status == 200 else f"{status}: {body[:300].decode(errors='replace')}",
        )
        if not counted:
            counted = True
            answered[0] += 1
            if answered[0] == answered[1]:
                first.set()
        if not keep_alive:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run(url: str, body: bytes, connections: int, recorder: Recorder) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = request_bytes(host, port, path, body)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    first = asyncio.Event()

    def wait_for_eof() -> None:  # the parent closes our stdin to stop us
        with contextlib.suppress(OSError):
            sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    answered = [0, connections]
    tasks = [
        asyncio.create_task(worker(host, port, payload, recorder, stop, first, answered))
        for _ in range(connections)
    ]
    await asyncio.wait([asyncio.create_task(first.wait()), asyncio.create_task(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    print("ready", flush=True)
    await stop.wait()
    _done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    recorder = Recorder()
    gc.disable()  # no collector pauses inside the measured latencies
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    runner(run(args.url, args.body.read_bytes(), args.connections, recorder))
    with args.out.open("wb") as out:
        recorder.records.tofile(out)
    times = os.times()
    print(
        json.dumps({
            "requests": len(recorder.records) // 3,
            "cpu_seconds": times.user + times.system,
            "errors": recorder.errors,
            "event_loop": runner.__module__.split(".")[0],
        }),
        flush=True,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
