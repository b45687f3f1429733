"""CPU time and memory of processes, read from /proc (Linux) or getrusage: what each benchmark
case costs besides its wall time.

    >>> before = ProcessSample.of(pid)
    >>> ...                                   # the measured interval
    >>> ProcessSample.of(pid).cpu_s - before.cpu_s, peak_rss_mb(pid)
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessSample:
    """CPU seconds (user + system) a process has used so far, and its resident memory now."""

    cpu_s: float
    rss_mb: float

    @classmethod
    def of(cls, pid: int) -> ProcessSample:
        with open(f"/proc/{pid}/stat") as fh:
            # the command name (field 2) may contain spaces: split after its closing paren
            fields = fh.read().rsplit(")", 1)[1].split()
        utime, stime = int(fields[11]), int(fields[12])
        return cls((utime + stime) / _TICKS, _status_kb(pid, "VmRSS") / 1024)


def peak_rss_mb(pid: int) -> float:
    """The highest resident set size the process has had (VmHWM), in MiB."""
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class SelfUsage:
    """getrusage of this process: CPU seconds so far and the peak RSS (for child cases that
    measure themselves from their first event to their last)."""

    cpu_s: float
    peak_rss_mb: float

    @classmethod
    def now(cls) -> SelfUsage:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return cls(ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
