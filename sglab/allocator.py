"""Keep glibc's malloc from giving large blocks back to the OS, so that op times do not depend on a process's history.

glibc serves a block above its mmap threshold with a fresh ``mmap`` and unmaps it on ``free``;
every such block is then page-faulted in again the next time it is allocated. The threshold
starts at 128 KiB and rises only after the process frees a larger mmapped block, so two
processes running the same code can differ: on this project's 2-core VM, an Adam step on a
784x1024 layer took 1.8-6.8 ms (median 4.1 ms over 10 fresh processes) and 1.4-2.7 ms (median
2.2 ms) once the threshold was fixed, its temporaries (a few MiB each) then reusing heap memory
(``benchmarks/allocator.py``). That made one
process per stage slower than the single process a profile was measured in, by the same op.

:func:`steady_allocator` fixes the mmap threshold at 64 MiB and keeps up to 256 MiB of freed heap
(``mallopt``), the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` settings made from
inside the process. The profiler and every rank of :mod:`sglab.dist` call it, so a profile and
the runs it predicts allocate alike. ``SGLAB_MALLOC=default`` leaves glibc's defaults alone;
elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024

_applied: bool | None = None


def steady_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once); whether they are fixed."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("SGLAB_MALLOC", "") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                    TRIM_THRESHOLD_BYTES))
    return _applied
