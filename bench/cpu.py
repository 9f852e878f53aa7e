"""CPU time of this process and of another, as the benchmarks measure it."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def own_cpu_seconds() -> float:
    """User + system CPU time of this process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
