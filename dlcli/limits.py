"""Sizes checked before allocating: a file or a recipe that declares more than the machine's
memory is refused by name, instead of swapping the machine to a halt or dying mid-allocation."""

from __future__ import annotations

import os


def available_bytes() -> int:
    """The memory the kernel says a new allocation can get (MemAvailable), else all of it."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def too_big(nbytes: int) -> str | None:
    """Why `nbytes` cannot be allocated, or None when it fits."""
    free = available_bytes()
    if nbytes > free:
        return f"needs {gib(nbytes)}, more than the {gib(free)} of memory available"
    return None
