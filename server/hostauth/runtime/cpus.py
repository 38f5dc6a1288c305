"""The CPUs this process may actually use: the affinity mask (a cpuset),
and the CPU quota of its cgroup (cgroup v2 `cpu.max`, the smallest on the
way to the root), which a container's CPU limit sets while the kernel still
shows every CPU of the host.

Workers default to the quota, rounded up, within the mask. Pinning a worker
to a CPU, and SCHED_BATCH, pay only when the service owns every CPU it sees;
under a smaller quota the kernel throttles the whole cgroup, and a pinned
worker would wait for its one CPU while others are free.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class CpuBudget:
    visible: int  # CPUs in the affinity mask
    quota: float | None  # CPUs' worth of time the cgroup may use; None: no limit

    @property
    def workers(self) -> int:
        if self.quota is None:
            return self.visible
        return max(1, min(self.visible, math.ceil(self.quota - 1e-9)))

    @property
    def owns_every_cpu(self) -> bool:
        return self.quota is None or self.quota >= self.visible

    def describe(self) -> str:
        quota = "no CPU quota" if self.quota is None else f"a CPU quota of {self.quota:g}"
        return f"{self.visible} CPU(s) visible, {quota}"


def cgroup_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The smallest cpu.max quota from this process's cgroup up to the root
    (cgroup v2), in CPUs; None when there is none, or no cgroup v2."""
    try:
        line = next(ln for ln in proc_cgroup.read_text().splitlines() if ln.startswith("0::"))
    except (OSError, StopIteration):
        return None
    group = root / line[3:].strip().lstrip("/")
    smallest: float | None = None
    while True:
        try:
            quota, period = (group / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            quota = "max"
        else:
            if quota != "max" and int(period) > 0:
                cpus = int(quota) / int(period)
                smallest = cpus if smallest is None else min(smallest, cpus)
        if group == root or root not in group.parents:
            return smallest
        group = group.parent


def cpu_budget(
    affinity: Callable[[int], set[int]] = os.sched_getaffinity,
    quota: Callable[[], float | None] = cgroup_quota,
) -> CpuBudget:
    return CpuBudget(len(affinity(0)), quota())
