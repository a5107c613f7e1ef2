"""The sandbox policy: what an instance may reach, and the paths it must never reach."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shipway.compute.sandbox import SandboxPolicy, instance_policy


def test_a_policy_travels_as_json() -> None:
    policy = SandboxPolicy(read=("/usr", "/m"), write=("/s",), network=True, cpus=(1,))
    assert SandboxPolicy.from_json(policy.to_json()) == policy


def test_an_instance_reads_python_the_system_and_its_model_and_writes_its_scratch(
    tmp_path: Path,
) -> None:
    policy = instance_policy(model_dir="/models/a", scratch=str(tmp_path), network=False)
    assert "/models/a" in policy.read
    assert sys.base_prefix in policy.read
    assert "/usr" in policy.read
    assert policy.write == (str(tmp_path),)
    assert not [p for p in policy.read if p in ("/", "/tmp", "/root", "/home", "/proc", "/etc")]


def test_a_protected_path_inside_what_instances_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="which every instance may read"):
        instance_policy(
            model_dir=str(tmp_path),
            scratch="/nowhere",
            network=False,
            protected=[str(tmp_path / "home")],
        )
    with pytest.raises(ValueError, match="lies inside"):
        instance_policy(
            model_dir=str(tmp_path / "m"), scratch="/s", network=False, protected=["/usr/x"]
        )
