"""The instance sandbox: what a model's code can reach, enforced by the kernel.

The local backend spawns an instance through this module's launcher::

    python -m shipway.compute.sandbox --policy '<json>' -- python -m shipway.serving ...

The launcher applies the :class:`SandboxPolicy` to itself, single-threaded and before anything of
the model is imported, then ``exec``\\ s the model server, which inherits every restriction (and
so does anything the model starts). An instance forked from a zygote
(:mod:`shipway.compute.zygote`) applies the same policy with the same :func:`apply`, in the
forked child (one thread), before it loads the model. In order:

1. **cgroups**: the process joins the instance's cgroups (memory, CPU and process-count limits,
   made by :mod:`shipway.compute.cgroups`);
2. **namespaces** (as root, or through an unprivileged user namespace): a private mount
   namespace with its own ``/dev/shm``, and, without network, an empty network namespace (no
   loopback services, no metadata endpoint, nothing outside);
3. **resource limits**: no core dumps, bounded open files; CPU affinity;
4. **no new privileges** (setuid binaries cannot raise them again);
5. **Landlock** (:mod:`shipway.compute.landlock`): read-only access to the Python installation,
   system libraries, a few files of ``/etc`` and ``/proc``, and the instance's model folder;
   read-write access to its scratch folder only; TCP denied when no network namespace could be
   made; signals and abstract sockets scoped to the sandbox;
6. **capabilities** (as root): all dropped, bounding and ambient sets too, so neither the process
   nor anything it executes is privileged, even as user 0.

Each step the kernel lacks is skipped and named in :attr:`Applied.missing`, which the model
server logs; ``docs/security.md`` says what each step covers. Only the standard library is
imported here.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import stat
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shipway.compute import landlock

__all__ = ["Applied", "SandboxPolicy", "apply", "instance_policy", "main"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_BIND = 4096
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_PR_SET_SECUREBITS = 28
# SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | ..._LOCKED |
# SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | ..._LOCKED
_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
_CAPABILITY_VERSION_3 = 0x20080522


@dataclass(frozen=True)
class SandboxPolicy:
    read: tuple[str, ...] = ()
    """Paths the instance may read (and execute) beneath."""
    write: tuple[str, ...] = ()
    """Paths the instance may read, write, create and remove beneath (its scratch folder)."""
    devices: tuple[str, ...] = (
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
    )
    network: bool = False
    """Whether the instance may use the host's network (off: an empty network namespace)."""
    cpus: tuple[int, ...] = ()
    """CPU affinity; empty: unchanged."""
    cgroup_procs: tuple[str, ...] = ()
    """``cgroup.procs`` files the process joins before anything else."""
    shm_bytes: int = 64 * 1024 * 1024
    """Size of the private ``/dev/shm``."""
    user: int | None = None
    """Run as this user and group id (when started as root): an unprivileged user of its own.
    The folders on the way to its paths that others may not enter are replaced, in its mount
    namespace, by ones holding only the way to its paths."""
    max_open_files: int = 65536

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxPolicy:
        data: dict[str, Any] = json.loads(text)
        for name, value in data.items():
            if isinstance(value, list):
                data[name] = tuple(value)
        return cls(**data)


# What a Python model server needs of the system, read-only: the programs and libraries, and the
# few files of /etc, /proc and /sys that the C library, OpenSSL and numeric libraries read.
_SYSTEM = (
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin",
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
    "/etc/localtime", "/etc/timezone", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
    "/etc/hosts", "/etc/host.conf", "/etc/resolv.conf", "/etc/gai.conf", "/etc/services",
    "/etc/protocols", "/etc/mime.types", "/etc/ssl", "/etc/ca-certificates", "/etc/pki",
    "/etc/os-release", "/etc/debian_version",
    "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg", "/proc/uptime",
    "/proc/version", "/proc/filesystems", "/proc/sys/kernel", "/proc/sys/vm/overcommit_memory",
    "/sys/devices/system/cpu", "/sys/devices/system/node", "/sys/fs/cgroup",
)  # fmt: skip


def instance_policy(
    *,
    model_dir: str,
    scratch: str,
    network: bool,
    cpus: Sequence[int] = (),
    cgroup_procs: Sequence[str] = (),
    protected: Sequence[str] = (),
    user: int | None = None,
) -> SandboxPolicy:
    """The policy of one model server: this Python (the interpreter, its libraries and the
    folders on its path), the system's libraries, the model's folder, its scratch folder.

    ``protected`` paths (the data dir, the access keys file) must not be readable through any
    of these: a ValueError says which rule would expose which.
    """
    cwd = os.getcwd()
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    python.update(p for p in sys.path if p and p != cwd and os.path.exists(p))
    python.update(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
    read = tuple(sorted(python)) + _SYSTEM + (model_dir,)
    for secret in protected:
        real = os.path.realpath(secret)
        for path in read:
            if real == os.path.realpath(path) or _beneath(real, os.path.realpath(path)):
                raise ValueError(
                    f"{secret} lies inside {path}, which every instance may read; "
                    "move it out of there"
                )
    return SandboxPolicy(
        read=read,
        write=(scratch,),
        network=network,
        cpus=tuple(cpus),
        cgroup_procs=tuple(cgroup_procs),
        user=user,
    )


def _beneath(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


@dataclass
class Applied:
    """What :func:`apply` could enforce on this kernel, and what it could not."""

    enforced: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = "sandbox: " + ", ".join(self.enforced)
        if self.missing:
            text += "; not available here: " + ", ".join(self.missing)
        return text


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _prctl(option: int, arg: int = 0) -> int:
    result: int = _c().prctl(
        ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )  # fmt: skip
    return result


def apply(policy: SandboxPolicy) -> Applied:
    """Confine the calling process (single-threaded, before the model is imported)."""
    applied = Applied()
    root = os.geteuid() == 0
    with open("/proc/sys/kernel/cap_last_cap") as file:
        last_cap = int(file.read())
    for procs in policy.cgroup_procs:
        with open(procs, "w") as file:
            file.write("0")  # "0": the writing process
    if policy.cgroup_procs:
        applied.enforced.append("cgroup limits")
    isolated, shm = _namespaces(policy, root, applied)
    user = policy.user if root and shm else None  # shm: a mount namespace of its own
    if user is not None:
        _make_reachable((*policy.read, *policy.write), user)
        os.chdir(os.getcwd())  # the scratch folder, through the new mounts
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = (
        policy.max_open_files
        if hard == resource.RLIM_INFINITY
        else min(hard, policy.max_open_files)
    )
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, limit) if soft >= 0 else limit, limit))
    if policy.cpus:
        os.sched_setaffinity(0, policy.cpus)
        applied.enforced.append(f"CPUs {','.join(map(str, policy.cpus))}")
    _check(_prctl(_PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)")
    applied.enforced.append("no new privileges")
    rules = landlock.Rules(
        read=(*policy.read, f"/proc/{os.getpid()}"),  # its own /proc/self, nobody else's
        write=policy.write + (("/dev/shm",) if shm else ()),
        devices=policy.devices,
        deny_tcp=not policy.network and not isolated,
    )
    try:
        abi = landlock.restrict(rules)
    except landlock.LandlockError as exc:
        applied.missing.append(f"Landlock ({exc.strerror})")
    else:
        applied.enforced.append(f"Landlock ABI {abi}")
        if rules.deny_tcp:
            (applied.enforced if abi >= 4 else applied.missing).append("TCP denied")
    if root:
        _drop_bounding_capabilities(last_cap)
        if user is not None:
            os.setgroups([])
            os.setresgid(user, user, user)
            os.setresuid(user, user, user)
            applied.enforced.append(f"user {user}")
        elif policy.user is not None:
            applied.missing.append("a user of its own (no mount namespace)")
        _drop_capabilities()
        applied.enforced.append("no capabilities")
    return applied


def _make_reachable(paths: Sequence[str], user: int) -> None:
    """Let ``user`` reach ``paths`` (and nothing beside them) where a folder on the way
    is closed to it: such a folder is covered by a tmpfs holding only the way to each path,
    and each path is bind-mounted back in place."""
    hidden: dict[str, list[str]] = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        closed = _first_closed(real, user)
        if closed is not None:
            hidden.setdefault(closed, []).append(real)
    libc = _c()
    for folder in sorted(hidden, key=len):
        if any(_beneath(folder, outer) for outer in hidden if outer != folder):
            continue  # rebuilt inside an outer one
        inside = [p for f, ps in hidden.items() if f == folder or _beneath(f, folder) for p in ps]
        handles = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in inside}
        try:
            _check(
                libc.mount(b"tmpfs", folder.encode(), b"tmpfs",
                           ctypes.c_ulong(_MS_NOSUID | _MS_NODEV), b"mode=0755,size=1m"),
                f"mount tmpfs on {folder}",
            )  # fmt: skip
            for path in sorted(inside, key=len):
                if os.path.isdir(f"/proc/self/fd/{handles[path]}"):
                    os.makedirs(path, mode=0o755, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                    with open(path, "a"):
                        pass
                source = f"/proc/self/fd/{handles[path]}".encode()
                _check(
                    libc.mount(source, path.encode(), None, ctypes.c_ulong(_MS_BIND | _MS_REC),
                               None),
                    f"bind {path}",
                )  # fmt: skip
        finally:
            for handle in handles.values():
                os.close(handle)


def _first_closed(path: str, user: int) -> str | None:
    """The outermost folder above ``path`` that ``user`` (not its owner) may not enter."""
    parts = path.strip("/").split("/")[:-1]
    current = ""
    for part in parts:
        current += "/" + part
        info = os.stat(current)
        allowed = stat.S_IXUSR if info.st_uid == user else stat.S_IXOTH
        if not info.st_mode & allowed:
            return current
    return None


def _namespaces(policy: SandboxPolicy, root: bool, applied: Applied) -> tuple[bool, bool]:
    """Private /dev/shm and (without network) an empty network namespace; whether the
    instance is cut off the network, and whether it has its own /dev/shm."""
    flags = _CLONE_NEWNS | (0 if policy.network else _CLONE_NEWNET)
    libc = _c()
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(ctypes.c_int(flags if root else flags | _CLONE_NEWUSER)) != 0:
        number = ctypes.get_errno()
        applied.missing.append(f"namespaces ({os.strerror(number)})")
        return False, False
    if not root:  # map ourselves to ourselves: no privilege outside the namespace
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    if not policy.network:
        applied.enforced.append("no network")
    try:
        _check(
            libc.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None),
            "mount --make-rprivate /",
        )
        options = f"size={policy.shm_bytes},mode=1777".encode()
        _check(
            libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", ctypes.c_ulong(_MS_NOSUID | _MS_NODEV),
                       options),
            "mount /dev/shm",
        )  # fmt: skip
    except OSError as exc:
        applied.missing.append(f"private /dev/shm ({exc.strerror})")
        return not policy.network, False
    applied.enforced.append("private /dev/shm")
    return not policy.network, True


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def _drop_bounding_capabilities(last_cap: int) -> None:
    """No program executed from here on gains a capability, even as user 0."""
    for cap in range(last_cap + 1):
        _prctl(_PR_CAPBSET_DROP, cap)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    _check(_prctl(_PR_SET_SECUREBITS, _SECUREBITS), "prctl(PR_SET_SECUREBITS)")


def _drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets."""
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: x2, all empty
    _check(_c().capset(header, data), "capset")


def main(argv: Sequence[str] | None = None) -> None:
    """The launcher: apply ``--policy``, then exec the command after ``--``."""
    parser = argparse.ArgumentParser(prog="python -m shipway.compute.sandbox")
    parser.add_argument("--policy", required=True, help="a SandboxPolicy as JSON")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    applied = apply(SandboxPolicy.from_json(args.policy))
    os.environ["SHIPWAY_SANDBOX"] = applied.summary()
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
