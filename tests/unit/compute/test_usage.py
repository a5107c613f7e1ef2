"""Reading an instance's CPU time and memory from the kernel, on real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipway.compute import usage as usage_module
from shipway.compute.cgroups import Cgroups, InstanceCgroup
from shipway.compute.usage import InstanceProcesses, Usage, machine_memory_bytes, read_usage

MIB = 1024 * 1024

BUSY = "while True: pass"
IDLE = "import time; time.sleep(60)"
READY_THEN_IDLE = "import time; print('ready', flush=True); time.sleep(60)"
HOLD_200_MIB = "import time; b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); "
HOLD_200_MIB += "print('ready', flush=True); time.sleep(60)"
BURN_ONE_SECOND = """
import time
t = time.process_time()
while time.process_time() - t < 1.0: pass
print("burned", flush=True)
time.sleep(60)
"""
CHILD_BURNS_HALF_A_SECOND = """
import subprocess, sys, time
subprocess.run([sys.executable, "-c",
    "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.5: pass"])
print("reaped", flush=True)
time.sleep(60)
"""


def start(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,  # as an instance: its own session
        stdout=subprocess.PIPE,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def one(instance: InstanceProcesses) -> Usage:
    found = read_usage({"i": instance})
    assert "i" in found
    return found["i"]


def rate(instance: InstanceProcesses, seconds: float = 1.0) -> float:
    """CPU seconds per second over ``seconds``."""
    before, t0 = one(instance).cpu_seconds, time.monotonic()
    time.sleep(seconds)
    after, t1 = one(instance).cpu_seconds, time.monotonic()
    return (after - before) / (t1 - t0)


def test_cpu_time_is_what_the_process_burned(processes: list[subprocess.Popen[bytes]]) -> None:
    burner = start(BURN_ONE_SECOND)
    processes.append(burner)
    assert burner.stdout is not None
    assert burner.stdout.readline().strip() == b"burned"
    # the second it burned and the interpreter's start, in clock ticks (1/100 s: 0.99 may be
    # the 0.998 s process_time() counted)
    assert 0.98 <= one(InstanceProcesses(burner.pid)).cpu_seconds <= 1.4


def test_a_busy_process_uses_one_cpu_an_idle_one_none(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    busy = start(BUSY)
    idle = start(IDLE)
    processes += [busy, idle]
    time.sleep(0.2)
    # other tests share the cores: a busy loop gets up to one of them, maybe not all of it
    assert 0.15 <= rate(InstanceProcesses(busy.pid)) <= 1.1
    assert rate(InstanceProcesses(idle.pid), 0.5) < 0.05


def test_the_session_counts_its_children_and_what_they_used_before_they_were_reaped(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    parent = start(CHILD_BURNS_HALF_A_SECOND)
    processes.append(parent)
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == b"reaped"
    assert one(InstanceProcesses(parent.pid)).cpu_seconds >= 0.45


def test_resident_memory_of_the_session(processes: list[subprocess.Popen[bytes]]) -> None:
    holder = start(HOLD_200_MIB)
    idle = start(IDLE)
    processes += [holder, idle]
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == b"ready"
    found = read_usage(
        {
            "big": InstanceProcesses(holder.pid, memory_limit=1024 * MIB),
            "small": InstanceProcesses(idle.pid),
        }
    )
    assert found["big"].memory_bytes >= 200 * MIB
    assert (found["big"].memory_limit, found["small"].memory_limit) == (1024 * MIB, None)
    assert found["small"].memory_bytes < 100 * MIB
    assert found["big"].memory_bytes < machine_memory_bytes()


def test_an_instance_whose_processes_are_gone_is_left_out() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    gone.wait()
    assert read_usage({"gone": InstanceProcesses(gone.pid)}) == {}
    assert read_usage({}) == {}


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    found = Cgroups.detect()
    if found is None:
        pytest.skip("this machine lets this process make no control groups")
    try:
        yield found
    finally:
        found.close()


def test_in_a_control_group_memory_comes_from_its_accounting(
    cgroups: Cgroups, processes: list[subprocess.Popen[bytes]]
) -> None:
    group = cgroups.create("usage-test", memory_bytes=1024 * MIB, cpus=None, pids=64)
    code = f"open({group.procs[0]!r}, 'w').write('0')\n" + HOLD_200_MIB
    holder = start(code)
    processes.append(holder)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == b"ready"
    found = one(InstanceProcesses(holder.pid, group))
    assert found.memory_bytes >= 200 * MIB
    if group.version == 1:
        assert found.memory_bytes == usage_module._cgroup_v1_memory(group)
    busy = start(f"open({group.procs[0]!r}, 'w').write('0')\n" + BUSY)
    processes.append(busy)
    time.sleep(0.2)
    # the busy process joined the group but has a session of its own: the group's CPU
    # accounting (v2) counts it, the session of the holder (v1) does not
    measured = rate(InstanceProcesses(holder.pid, group))
    assert measured >= 0.4 if group.version == 2 else measured < 0.05


def test_cgroup_v2_accounting_is_read_from_its_files(tmp_path: Path) -> None:
    """The kernel's v2 files (this machine may have v1 only): CPU from cpu.stat, memory from
    memory.current less the inactive file cache."""
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 5\n")
    (tmp_path / "memory.current").write_text(f"{300 * MIB}\n")
    (tmp_path / "memory.stat").write_text(f"anon {200 * MIB}\ninactive_file {100 * MIB}\n")
    group = InstanceCgroup((tmp_path,), tmp_path, 2)
    # the session does not exist: a v2 group needs no /proc
    assert one(InstanceProcesses(2**22 + 7, group)) == Usage(2.5, 200 * MIB)
    limited = InstanceProcesses(2**22 + 7, group, memory_limit=512 * MIB)
    assert one(limited) == Usage(2.5, 200 * MIB, 512 * MIB)


def test_a_v2_group_that_cannot_be_read_falls_back_to_the_session(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    idle = start(READY_THEN_IDLE)
    processes.append(idle)
    assert idle.stdout is not None
    assert idle.stdout.readline().strip() == b"ready"  # running, not still starting
    group = InstanceCgroup((tmp_path,), tmp_path, 2)  # no files: a group removed meanwhile
    found = one(InstanceProcesses(idle.pid, group))
    assert 0 < found.memory_bytes < 100 * MIB


def test_exports() -> None:
    assert sorted(usage_module.__all__) == [
        "InstanceProcesses",
        "Usage",
        "machine_memory_bytes",
        "read_usage",
        "session_memory",
    ]
