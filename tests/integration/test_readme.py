"""Every code block of the README, run as pasted and in order, the way a new user would.

The blocks run in a fresh ``HOME`` (so ``~/.shipway`` and ``~/.shipway-keys.json`` are the
test's own) with ``.venv/bin`` first on ``PATH`` and the repository as the working directory.
Three things are rewritten before a block runs, so that tests can run side by side: the ports
(``127.0.0.1:8080`` and ``:8081`` become free ports), and ``/tmp/`` becomes the test's own
temporary folder. Nothing else is.

A comment right before a block says how to run it when running it plainly is not enough:

- ``<!-- ci: background until="TEXT" -->``: a server; it runs in the background until the end,
  and the next block waits until it has printed TEXT. ``until-url=URL`` waits until URL answers.
- ``<!-- ci: restart until="TEXT" -->``: the same, after stopping the servers started so far
  (Ctrl-C, as the README asks the reader to do).
- ``<!-- ci: prints="TEXT" -->``: the block must print TEXT.
- ``<!-- ci: skip="WHY" -->``: not run (``./scripts/test`` is what is running this).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import free_port

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"

BLOCK = re.compile(
    r"(?:<!--\s*ci:(?P<directive>.*?)-->\s*\n)?^[ ]*```(?P<language>[\w-]*)\n(?P<code>.*?)^[ ]*```",
    flags=re.DOTALL | re.MULTILINE,
)
RUNNABLE = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}


@dataclass
class Block:
    line: int
    language: str
    code: str
    directive: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"README.md line {self.line}"


def parse_directive(text: str) -> dict[str, str]:
    """``background until="Press Ctrl-C"`` -> {"background": "", "until": "Press Ctrl-C"}."""
    directive: dict[str, str] = {}
    for word in shlex.split(text or ""):
        key, _, value = word.partition("=")
        directive[key] = value
    return directive


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(
            line=text.count("\n", 0, match.start("code")) + 1,
            language=match["language"],
            code=textwrap.dedent(match["code"]),  # a block in a list item is indented
            directive=parse_directive(match["directive"]),
        )
        for match in BLOCK.finditer(text)
    ]


@dataclass
class Background:
    block: Block
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C in its terminal
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Reader:
    """Runs README blocks as a reader would, in one shell environment, servers in the back."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = {"8080": str(free_port()), "8081": str(free_port())}
        home = tmp / "home"
        home.mkdir()
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SHIPWAY_")},
            "HOME": str(home),
            "PATH": venv_bin + os.pathsep + os.environ["PATH"],
            "SHIPWAY_PORT": self.ports["8080"],
            "SHIPWAY_URL": f"http://127.0.0.1:{self.ports['8080']}",
            "PYTHONUNBUFFERED": "1",
        }
        pip_config = Path.home() / ".config" / "pip" / "pip.conf"
        if pip_config.exists() and "PIP_CONFIG_FILE" not in self.env:
            self.env["PIP_CONFIG_FILE"] = str(pip_config)  # the real HOME's package index
        self.background: list[Background] = []

    def rewrite(self, code: str) -> str:
        for default, port in self.ports.items():
            code = code.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")
            code = code.replace(f"--port {default}", f"--port {port}")
        return code.replace("/tmp/", f"{self.tmp}/")

    def command(self, block: Block) -> list[str]:
        code = self.rewrite(block.code)
        if RUNNABLE[block.language] == "python":
            return [sys.executable, "-c", code]
        return ["bash", "-euo", "pipefail", "-c", code]

    def run(self, block: Block) -> None:
        if "restart" in block.directive:
            self.stop()
        if "background" in block.directive or "restart" in block.directive:
            self.start(block)
            return
        done = subprocess.run(
            self.command(block), cwd=ROOT, env=self.env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (
            f"{block.where} exited {done.returncode}:\n{block.code}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n{self.server_logs()}"
        )
        if expected := block.directive.get("prints"):
            assert expected in done.stdout, f"{block.where} did not print {expected!r}:\n{done}"

    def start(self, block: Block) -> None:
        log = self.tmp / f"background-{block.line}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.command(block), cwd=ROOT, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        started = Background(block, process, log)
        self.background.append(started)
        until, url = block.directive.get("until"), block.directive.get("until-url")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{block.where} exited:\n{started.output()}"
            if until and until in started.output():
                return
            if url and self._answers(self.rewrite(url)):
                return
            time.sleep(0.2)
        raise AssertionError(f"{block.where} was not ready in 240 s:\n{started.output()}")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def server_logs(self) -> str:
        return "\n".join(
            f"--- background block at {started.block.where}\n{started.output()[-4000:]}"
            for started in self.background
        )

    def stop(self) -> None:
        for started in self.background:
            started.stop()
        self.background.clear()


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    reading = Reader(tmp_path)
    yield reading
    reading.stop()


def test_the_readme_marks_how_to_run_every_block() -> None:
    """Every block is one a test can run, or says why not; directives are known ones."""
    known = {"background", "restart", "until", "until-url", "prints", "skip"}
    for block in readme_blocks():
        assert block.language in RUNNABLE, f"{block.where}: a ```{block.language} block"
        assert set(block.directive) <= known, f"{block.where}: {block.directive}"


@pytest.mark.slow(seconds=150)
def test_every_readme_block_runs_as_pasted_in_order(reader: Reader) -> None:
    blocks = readme_blocks()
    assert len(blocks) > 10
    for block in blocks:
        if "skip" in block.directive:
            continue
        reader.run(block)
