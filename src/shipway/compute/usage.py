"""Usage: the CPU time and memory an instance's processes use, read from the kernel.

An instance is one session of processes (the model server and whatever it started; its first
process starts the session, so the session id is that process's pid) and, where the machine lets
the server make them, one control group (:mod:`shipway.compute.cgroups`). :func:`read_usage`
reads every running instance of a backend in one pass:

- on cgroup v2, from the group's own accounting: ``cpu.stat`` ``usage_usec`` (kept by the
  kernel for every group, whatever controllers are enabled) and ``memory.current``;
- on cgroup v1, memory from ``memory.usage_in_bytes``; the groups Shipway makes have no
  ``cpuacct`` accounting, so CPU time comes from ``/proc`` as below;
- without a group, both from ``/proc``: every process of the session, in one scan of ``/proc``
  for all instances (as LocalBackend's memory watch counts an instance's memory).

From ``/proc``, CPU time is each live process's user and system time plus what it collected
from the children it waited for (``cutime``, ``cstime``), so it grows as long as the instance's
processes reap their own; memory is their resident set (shared pages count in each process, as
``ps`` counts them). From a group, memory leaves out the file cache the kernel may drop at once
(``inactive_file``), as ``docker stats`` does. Readings are cumulative CPU seconds and bytes in
use now: the rate between two readings is the utilization (:mod:`shipway.monitor.instance_usage`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from shipway.compute.cgroups import InstanceCgroup

__all__ = ["InstanceProcesses", "Usage", "machine_memory_bytes", "read_usage", "session_memory"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class InstanceProcesses:
    """Where an instance's processes are: its session, and its control group if it has one."""

    session: int
    """The session id: the pid of the instance's first process, which started the session."""
    cgroup: InstanceCgroup | None = None
    memory_limit: int | None = None
    """The memory the instance may use (its instance type's), in bytes; None: no limit."""


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    """CPU time the instance's processes have used, user and system, summed over cores."""
    memory_bytes: int
    """Memory the instance's processes use now."""
    memory_limit: int | None = None
    """The memory the instance may use, as its backend enforces it; None: no limit."""


@dataclass
class _Session:
    ticks: int = 0
    rss_pages: int = 0
    seen: bool = False


def read_usage(instances: Mapping[str, InstanceProcesses]) -> dict[str, Usage]:
    """The usage of each instance (by instance id) whose processes could be read; an instance
    whose processes are all gone is left out."""
    found: dict[str, Usage] = {}
    from_proc: dict[str, InstanceProcesses] = {}
    for instance_id, processes in instances.items():
        group = processes.cgroup
        usage = _cgroup_v2(group) if group is not None and group.version == 2 else None
        if usage is not None:
            found[instance_id] = replace(usage, memory_limit=processes.memory_limit)
        else:
            from_proc[instance_id] = processes
    if not from_proc:
        return found
    sessions = _scan_sessions({p.session for p in from_proc.values()})
    for instance_id, processes in from_proc.items():
        session = sessions.get(processes.session)
        if session is None or not session.seen:
            continue
        memory = session.rss_pages * _PAGE
        group = processes.cgroup
        if group is not None and group.version == 1:
            memory = _cgroup_v1_memory(group) or memory
        found[instance_id] = Usage(session.ticks / _TICKS, memory, processes.memory_limit)
    return found


def session_memory(session: int) -> int:
    """Resident memory of every live process of a session (an instance and what it started)."""
    return _scan_sessions({session})[session].rss_pages * _PAGE


def machine_memory_bytes() -> int:
    """Physical memory of this machine."""
    return int(os.sysconf("SC_PHYS_PAGES")) * _PAGE


def _scan_sessions(wanted: set[int]) -> dict[int, _Session]:
    """CPU ticks and resident pages of the live processes of each wanted session."""
    sessions = {s: _Session() for s in wanted}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue  # gone meanwhile
        # after "pid (command) ": state, ppid, pgrp, session, ... utime stime cutime cstime at
        # 11-14, rss at 21 (the command may hold spaces and parentheses: split after the last)
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 22:
            continue
        session = sessions.get(int(fields[3]))
        if session is None:
            continue
        session.seen = True
        session.ticks += sum(int(f) for f in fields[11:15])
        session.rss_pages += int(fields[21])
    return sessions


def _cgroup_v2(group: InstanceCgroup) -> Usage | None:
    folder = group.folders[0] if group.folders else None
    if folder is None:
        return None
    usec = _key(folder / "cpu.stat", "usage_usec")
    memory = _int(folder / "memory.current")
    if usec is None or memory is None:
        return None
    inactive = _key(folder / "memory.stat", "inactive_file") or 0
    return Usage(usec / 1e6, max(0, memory - inactive))


def _cgroup_v1_memory(group: InstanceCgroup) -> int | None:
    if group.memory is None:
        return None
    memory = _int(group.memory / "memory.usage_in_bytes")
    if memory is None:
        return None
    inactive = _key(group.memory / "memory.stat", "total_inactive_file") or 0
    return max(0, memory - inactive)


def _int(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _key(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed file (``cpu.stat``, ``memory.stat``)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return None
    return None
