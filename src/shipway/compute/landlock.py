"""Landlock: the kernel's unprivileged file-system and network allow-list (Linux 5.13+).

A process calls :func:`restrict` once; from then on it, and every process it starts, can open
only what the rules allow — files under the read paths for reading (and executing), files under
the write paths for writing, creating and removing — whatever its user or capabilities. With
``deny_tcp`` (ABI 4, Linux 6.7+) it can neither bind nor connect TCP sockets; from ABI 6 (Linux
6.12+) it can no longer send signals to, or connect to the abstract Unix sockets of, processes
outside its sandbox. Landlock also keeps a sandboxed process from tracing (and so from reading
``/proc/<pid>/environ`` or ``mem`` of) any process outside the sandbox.

Only the standard library is imported: this runs before the model server's imports.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LandlockError", "Rules", "abi_version", "restrict"]

# syscall numbers: the same on every architecture (the generic table)
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

# file-system access rights, by the ABI version that brought them
_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_IOCTL_DEV = 1 << 15  # ABI 5

_FS_BY_ABI = {
    1: (1 << 13) - 1,
    2: (1 << 14) - 1,
    3: (1 << 15) - 1,
    4: (1 << 15) - 1,
    5: (1 << 16) - 1,
}
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
"""The rights that apply to a file (a rule on a file may grant only these)."""

_READ = _EXECUTE | _READ_FILE | _READ_DIR
_WRITE = (
    _READ
    | _WRITE_FILE
    | _REMOVE_DIR
    | _REMOVE_FILE
    | _MAKE_DIR
    | _MAKE_REG
    | _MAKE_SOCK
    | _MAKE_FIFO
    | _MAKE_SYM
    | _REFER
    | _TRUNCATE
)
_DEVICE = _READ_FILE | _WRITE_FILE | _IOCTL_DEV
"""For character devices such as /dev/null: read, write, and their ioctls (isatty...)."""

_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1


class LandlockError(OSError):
    """Landlock is missing or refused a rule; the message says which and why."""


@dataclass(frozen=True)
class Rules:
    """What a sandboxed process may reach. Paths that do not exist are skipped."""

    read: tuple[str, ...] = ()
    """Read (and execute) files and list folders beneath these paths."""
    write: tuple[str, ...] = ()
    """Everything beneath these paths: read, write, create, remove."""
    devices: tuple[str, ...] = ()
    """Device files to read and write (``/dev/null``...)."""
    deny_tcp: bool = False
    """Forbid binding and connecting TCP sockets (ABI 4+; ignored below)."""


_libc: ctypes.CDLL | None = None


def _syscall(number: int, *args: object) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.syscall.restype = ctypes.c_long
    # variadic: pass every integer as a full ``long`` (a C ``int`` leaves the upper half unset)
    wide = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result: int = _libc.syscall(ctypes.c_long(number), *wide)
    return result


def abi_version() -> int:
    """The Landlock ABI this kernel offers; 0 when it has none (or it is disabled)."""
    if platform.system() != "Linux":
        return 0
    version = _syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return max(0, version)


def restrict(rules: Rules) -> int:
    """Sandbox the calling thread (call it before starting threads) and its future children.

    Returns the ABI version used. Raises :class:`LandlockError` if the kernel has no Landlock.
    ``PR_SET_NO_NEW_PRIVS`` must be set, or the caller must have ``CAP_SYS_ADMIN``.
    """
    abi = abi_version()
    if abi < 1:
        raise LandlockError("Landlock is not available in this kernel")
    handled_fs = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    handled_net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if rules.deny_tcp and abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("=Q", handled_fs)
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _syscall(_CREATE_RULESET, buffer, len(attr), 0)
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        _add(ruleset, rules.read, _READ & handled_fs)
        _add(ruleset, rules.write, _WRITE & handled_fs)
        _add(ruleset, rules.devices, _DEVICE & handled_fs)
        if _syscall(_RESTRICT_SELF, ruleset, 0) < 0:
            raise _error("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _add(ruleset: int, paths: Iterable[str], access: int) -> None:
    for path in paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            allowed = access if os.path.isdir(path) else access & _FILE_RIGHTS
            attr = struct.pack("=Qi", allowed, fd)
            buffer = ctypes.create_string_buffer(attr, len(attr))
            if _syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, buffer, 0) < 0:
                raise _error(f"landlock_add_rule({path})")
        finally:
            os.close(fd)


def _error(call: str) -> LandlockError:
    number = ctypes.get_errno()
    return LandlockError(number, f"{call} failed: {os.strerror(number)}")
