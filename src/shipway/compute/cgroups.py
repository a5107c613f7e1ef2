"""Control groups: a memory, CPU and process-count limit per instance, enforced by the kernel.

:meth:`Cgroups.detect` finds where this process may make control groups: on the unified (v2)
hierarchy when the ``memory`` controller can be delegated to children, else on the v1
``memory``, ``cpu`` and ``pids`` hierarchies when they are writable (as root on a machine that
still mounts them). Each server makes one parent group, ``shipway-<pid>``, and one child per
instance; a server that died left its parent behind, which the next one removes.

When neither is writable, :meth:`Cgroups.detect` returns None and the local backend falls back
to watching each instance's memory itself and pinning its CPUs (``compute/local.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cgroups", "InstanceCgroup"]

log = logging.getLogger(__name__)

_PERIOD_US = 100_000
_CONTROLLERS = ("memory", "cpu", "pids")


@dataclass(frozen=True)
class InstanceCgroup:
    """One instance's groups (one folder on v2, one per controller on v1)."""

    folders: tuple[Path, ...]
    memory: Path | None
    """The folder with the memory controller."""
    version: int

    @property
    def procs(self) -> tuple[str, ...]:
        """The ``cgroup.procs`` files a process writes itself into to join."""
        return tuple(str(folder / "cgroup.procs") for folder in self.folders)

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the memory limit."""
        if self.memory is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self.memory / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def memory_bytes(self) -> int | None:
        """Memory in use by the instance's processes now."""
        if self.memory is None:
            return None
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        try:
            return int((self.memory / name).read_text())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Kill whatever the instance left running in its groups, then remove them."""
        for folder in self.folders:
            _remove(folder)


class Cgroups:
    """Where this server makes its instances' control groups."""

    def __init__(self, version: int, parents: dict[str, Path]) -> None:
        self.version = version
        self._parents = parents
        """Controller name (v1) or "" (v2) -> this server's parent folder."""

    @classmethod
    def detect(cls) -> Cgroups | None:
        """The cgroups this process can make children in, or None."""
        try:
            memberships = _memberships()
            mounts = _mounts()
        except OSError:
            return None
        name = f"shipway-{os.getpid()}"
        v2_mount = mounts.get("cgroup2")
        if v2_mount is not None and "" in memberships:
            found = _v2(v2_mount / memberships[""].lstrip("/"), name)
            if found is not None:
                return cls(2, {"": found})
        parents: dict[str, Path] = {}
        for controller in _CONTROLLERS:
            mount = mounts.get(controller)
            if mount is None or controller not in memberships:
                continue
            base = mount / memberships[controller].lstrip("/")
            parent = _make_parent(base, name)
            if parent is not None:
                parents[controller] = parent
        if "memory" not in parents:
            for parent in parents.values():
                _remove(parent)
            return None
        return cls(1, parents)

    def create(
        self, instance_id: str, *, memory_bytes: int | None, cpus: float | None, pids: int | None
    ) -> InstanceCgroup:
        """Make the instance's groups with these limits (None: unlimited)."""
        if self.version == 2:
            folder = self._parents[""] / instance_id
            folder.mkdir(exist_ok=True)
            if memory_bytes:
                _set(folder / "memory.max", str(memory_bytes))
                _set(folder / "memory.swap.max", "0", required=False)
            if cpus:
                _set(folder / "cpu.max", f"{int(cpus * _PERIOD_US)} {_PERIOD_US}", required=False)
            if pids:
                _set(folder / "pids.max", str(pids), required=False)
            return InstanceCgroup((folder,), folder, 2)
        folders: list[Path] = []
        memory = None
        for controller, parent in self._parents.items():
            if controller == "cpu" and not cpus:
                continue  # no quota to keep: stay out of the CPU hierarchy altogether
            folder = parent / instance_id
            folder.mkdir(exist_ok=True)
            folders.append(folder)
            if controller == "memory":
                memory = folder
                if memory_bytes:
                    _set(folder / "memory.limit_in_bytes", str(memory_bytes))
                    # no swapping past the limit either, where swap accounting is on
                    _set(folder / "memory.memsw.limit_in_bytes", str(memory_bytes), required=False)
            elif controller == "cpu" and cpus:
                _set(folder / "cpu.cfs_period_us", str(_PERIOD_US))
                _set(folder / "cpu.cfs_quota_us", str(int(cpus * _PERIOD_US)))
            elif controller == "pids" and pids:
                _set(folder / "pids.max", str(pids))
        return InstanceCgroup(tuple(folders), memory, 1)

    def close(self) -> None:
        """Remove this server's groups (instances should be stopped by now)."""
        for parent in self._parents.values():
            _remove(parent)


def _memberships() -> dict[str, str]:
    """This process's group per controller ("" for the unified hierarchy)."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _mounts() -> dict[str, Path]:
    """Mount points: "cgroup2", and each v1 controller's."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, extra = before.split(), after.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        kind, options = extra[0], extra[2].split(",")
        if kind == "cgroup2":
            found.setdefault("cgroup2", Path(fields[4]))
        elif kind == "cgroup":
            for controller in _CONTROLLERS:
                if controller in options:
                    found.setdefault(controller, Path(fields[4]))
    return found


def _v2(ours: Path, name: str) -> Path | None:
    """On the unified hierarchy: a parent beside this process with memory delegated to it."""
    try:
        available = (ours / "cgroup.controllers").read_text().split()
    except OSError:
        return None
    if "memory" not in available or not os.access(ours / "cgroup.subtree_control", os.W_OK):
        return None
    wanted = [c for c in _CONTROLLERS if c in available]
    enable = " ".join(f"+{c}" for c in wanted)
    try:
        _set(ours / "cgroup.subtree_control", enable)
    except OSError:
        # a group with processes cannot delegate (unless it is the root): move this server
        # into a leaf of its own first, as container runtimes do
        try:
            leaf = ours / "shipway-server"
            leaf.mkdir(exist_ok=True)
            _set(leaf / "cgroup.procs", "0")
            _set(ours / "cgroup.subtree_control", enable)
        except OSError as exc:
            log.info("cgroup v2 at %s cannot delegate memory: %s", ours, exc)
            return None
    parent = _make_parent(ours, name)
    if parent is None:
        return None
    try:
        _set(parent / "cgroup.subtree_control", enable)
    except OSError as exc:
        log.info("cgroup v2 at %s cannot delegate memory: %s", parent, exc)
        _remove(parent)
        return None
    return parent


def _make_parent(base: Path, name: str) -> Path | None:
    """``base/name``, after removing the groups of servers no longer running."""
    try:
        for stale in base.glob("shipway-[0-9]*"):
            if not _alive(int(stale.name.split("-", 1)[1])):
                _remove(stale)
        parent = base / name
        parent.mkdir(exist_ok=True)
        return parent
    except (OSError, ValueError) as exc:
        log.debug("cannot make cgroups under %s: %s", base, exc)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set(path: Path, value: str, *, required: bool = True) -> None:
    try:
        with open(path, "w") as file:
            file.write(value)
    except OSError:
        if required:
            raise


def _remove(folder: Path) -> None:
    """Remove a group and its children, killing any process left in them."""
    if not folder.is_dir():
        return
    for child in [p for p in folder.iterdir() if p.is_dir()]:
        _remove(child)
    for _ in range(50):
        try:
            pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)  # the killed processes are still leaving
    log.warning("could not remove cgroup %s", folder)
