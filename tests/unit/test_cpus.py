"""Workers follow the CPUs the service may use, not the host's count."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostauth.runtime.cpus import cgroup_quota, cpu_budget


def _cgroup(tmp_path: Path, limits: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup v2 tree with cpu.max files at the given paths; this process in the deepest."""
    root = tmp_path / "cgroup"
    for path, value in limits.items():
        folder = root / path if path else root
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cpu.max").write_text(value + "\n")
    deepest = max(limits, key=len)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(f"0::/{deepest}\n")
    return root, proc


@pytest.mark.parametrize(
    ("limits", "quota"),
    [
        ({"": "max 100000", "kubepods/pod1/c1": "max 100000"}, None),
        ({"": "max 100000", "kubepods/pod1/c1": "150000 100000"}, 1.5),
        # The smallest limit on the way up holds: a pod's limit over its container's.
        ({"": "max 100000", "kubepods/pod1": "50000 100000", "kubepods/pod1/c1": "200000 100000"}, 0.5),
    ],
)
def test_the_quota_is_the_smallest_cpu_max_up_to_the_root(
    tmp_path: Path, limits: dict[str, str], quota: float | None
) -> None:
    root, proc = _cgroup(tmp_path, limits)
    assert cgroup_quota(root, proc) == quota


def test_no_cgroup_v2_is_no_quota(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("12:cpu,cpuacct:/docker/abc\n")  # cgroup v1 only
    assert cgroup_quota(tmp_path, proc) is None


@pytest.mark.parametrize(
    ("visible", "quota", "workers", "owns"),
    [(8, None, 8, True), (8, 2.0, 2, False), (8, 1.5, 2, False), (2, 4.0, 2, True), (4, 0.25, 1, False)],
)
def test_workers_follow_the_quota_within_the_affinity_mask(
    visible: int, quota: float | None, workers: int, owns: bool
) -> None:
    budget = cpu_budget(lambda _pid: set(range(visible)), lambda: quota)
    assert (budget.workers, budget.owns_every_cpu) == (workers, owns)
    assert str(visible) in budget.describe()
