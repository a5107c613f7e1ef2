"""The sandbox launcher alone: a policy applied to a small script, as the kernel enforces it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shipway.compute import landlock
from shipway.compute.sandbox import instance_policy

SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys
    results = {}
    for path in sys.argv[1:]:
        try:
            with open(path, "rb") as file:
                file.read(1)
            results[path] = "read"
        except OSError as exc:
            results[path] = type(exc).__name__
    try:
        with open("written", "w") as file:
            file.write("ok")
        results["scratch"] = "written"
    except OSError as exc:
        results["scratch"] = type(exc).__name__
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        results["tcp"] = "connected"
    except OSError as exc:
        results["tcp"] = type(exc).__name__
    results["sandbox"] = os.environ.get("SHIPWAY_SANDBOX", "")
    print(json.dumps(results))
    """
)


def _run(tmp_path: Path, *paths: str, network: bool = False) -> dict[str, str]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "script.py").write_text(SCRIPT)
    (model / "weights").write_text("mine")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    policy = instance_policy(model_dir=str(model), scratch=str(scratch), network=network)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipway.compute.sandbox",
            "--policy",
            policy.to_json(),
            "--",
            sys.executable,
            str(model / "script.py"),
            str(model / "weights"),
            *paths,
        ],
        cwd=scratch,
        env={
            "PATH": "/usr/bin:/bin",
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        },
        capture_output=True,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_the_launcher_confines_a_program_to_its_model_and_scratch(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the server's")
    seen = _run(tmp_path, str(secret), f"/proc/{os.getpid()}/environ", "/etc/hostname")
    assert seen[str(tmp_path / "model" / "weights")] == "read"
    assert seen[str(secret)] == "PermissionError"
    assert seen[f"/proc/{os.getpid()}/environ"] == "PermissionError"
    assert seen["/etc/hostname"] == "PermissionError"
    assert seen["scratch"] == "written"
    assert seen["tcp"] == "OSError"  # no network: an empty namespace, or TCP denied
    assert "Landlock ABI" in seen["sandbox"]
