"""The benchmarks' clock on a shared machine: wall seconds of a block, and the share of the
machine's CPU that processes other than this one and its children took meanwhile."""

from __future__ import annotations

import os
import time


def machine_cpu_seconds() -> float:
    """CPU seconds used so far by everything on the machine (Linux /proc/stat; elsewhere 0, so
    the share of other processes reads 0 %)."""
    if not os.path.exists("/proc/stat"):
        return 0.0
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process and the children it has waited for."""
    return sum(os.times()[:4])


class Clock:
    def __enter__(self) -> Clock:
        self.started, self.machine, self.own = time.perf_counter(), machine_cpu_seconds(), own_cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
        others = machine_cpu_seconds() - self.machine - (own_cpu_seconds() - self.own)
        self.others = max(others, 0.0) / (self.seconds * os.cpu_count())

    def __str__(self) -> str:
        return f"wall {self.seconds:.1f} s, other processes {self.others:.0%} of the CPU"
