"""Giving back the read-only file pages a process touched once and may not need again.

A zygote imports the model server and its runtime's libraries: the import code of every shared
library and module it loads is read into memory (about 35 MB for scikit-learn's stack), and most
of it is never run again, by the zygote or by the instances forked from it. Those pages stay
resident in the zygote, and being mapped by it alone, count whole in its proportional set size.
:func:`release_read_only_file_pages` asks the kernel to reclaim them (``MADV_PAGEOUT``): a page
of a read-only file mapping is clean, so it is dropped (it stays in the page cache while anyone
else maps it) and read back by a minor fault if a process touches it again. Pages other
processes map too are left alone by the kernel. Writable mappings are never touched.

Only the standard library is used (the zygote imports this before forking).
"""

from __future__ import annotations

import ctypes
import logging
import os

__all__ = ["release_read_only_file_pages"]

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21
"""Linux 5.4 and later."""


def release_read_only_file_pages() -> int:
    """Ask the kernel to reclaim this process's resident pages of read-only file mappings;
    the bytes of the mappings advised (0 where the kernel cannot: before Linux 5.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except (OSError, AttributeError):
        return 0
    advised = 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith("/") or "w" in fields[1]:
            continue
        start, end = (int(part, 16) for part in fields[0].split("-"))
        if madvise(start, end - start, MADV_PAGEOUT) != 0:
            number = ctypes.get_errno()
            log.info("pages of read-only mappings not given back: %s", os.strerror(number))
            return advised
        advised += end - start
    return advised
