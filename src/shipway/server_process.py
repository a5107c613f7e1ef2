"""The server process: what ``shipway server`` executes once it has read its options.

``python -m shipway.server_process [--host H] [--port P] [--home DIR] [--demo]`` runs the whole
platform (:func:`shipway.platform.serve`) until SIGINT or SIGTERM and prints what the command
line promises: where it listens, the sample endpoint with ``--demo``, ``Press Ctrl-C to stop.``,
and a refusal to start as one ``Error: ...`` line on stderr with status 1. The command line
(typer, rich) stays out of the long-running process: about 4 MiB of an idle server's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shipway.platform import Platform

__all__ = ["main"]


def _bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shipway server")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--demo", action="store_true")
    args = parser.parse_args(argv)

    from shipway.domain.errors import ShipwayError
    from shipway.platform import serve
    from shipway.settings import Settings

    overrides: dict[str, object] = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("home", args.home))
        if value is not None
    }
    settings = Settings(**overrides)  # type: ignore[arg-type]

    async def ready(platform: Platform) -> None:
        url = f"http://{settings.host}:{settings.port}"
        print(f"Shipway is running at {_bold(url)}  (data dir {settings.home})")
        print(f"  REST API docs: {url}/docs")
        print(f"  Prometheus metrics: {url}/metrics")
        if args.demo:
            from shipway.demo import deploy_demo, sample_request

            name = await deploy_demo(platform)
            while (
                status := (await asyncio.to_thread(platform.endpoints.get, name)).endpoint_status
            ) == "Creating":
                await asyncio.sleep(0.1)
            print(f"Endpoint {_bold(name)} is {status.value}. Invoke it:")
            body = sample_request(settings.home, rows=1).replace(" ", "")
            print(
                f"  curl -s {url}/endpoints/{name}/invocations "
                f"-H 'Content-Type: application/json' -d '{body}'"
            )
            print(f"  shipway invoke {name} --body '{body}'")
        print("Press Ctrl-C to stop.", flush=True)

    try:
        serve(settings, on_ready=ready)
    except ShipwayError as exc:  # refused to start (nothing was started or changed): one line
        red = sys.stderr.isatty()
        label = "\033[31mError: \033[0m" if red else "Error: "
        print(f"{label}{exc.message}", file=sys.stderr)
        return 1
    print("Shipway stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
