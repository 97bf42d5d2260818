"""How much memory a new allocation can still get, and whether an error is an allocator's refusal: what lets
statewise refuse networks too large for the machine in one line instead of an allocator's traceback."""

from __future__ import annotations

import os

import torch


def available_memory() -> int | None:
    """Bytes of memory a new allocation can still get: Linux's MemAvailable, within the cgroup's limit if the process
    has one (a container); elsewhere the physical memory; None where neither is known."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            free = next((int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:")), None)
    except (OSError, ValueError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, OSError, ValueError):
            return None
    try:  # cgroup v2: memory.max ("max" when unlimited) less what the group already uses
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit != "max":
            free = min(free, int(limit) - int(open("/sys/fs/cgroup/memory.current").read()))
    except (OSError, ValueError):
        pass
    return free


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator's refusal (CPU or GPU), not some other error."""
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("can't allocate memory", "not enough memory", "out of memory"))


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
