"""`make chaos` end to end on three of its scenarios (a restart of the
database, a stop and start of the service, the failover to the standby): it
runs them under load, prints its table, and exits 0 only when nothing
acknowledged was lost, nothing answered internal and no worker stayed
dead."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.support.processes import ROOT


async def test_the_fault_suite_runs_its_scenarios_and_prints_its_table() -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bench.chaos", "--only", "fast restart", "SIGTERM", "failover to the standby"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| scenario | calls | acked | lost rows/audit |")
    by_name = {row.split(" | ")[0].lstrip("| "): row.split(" | ") for row in rows[1:]}
    assert set(by_name) == {"fast restart", "SIGTERM", "failover to the standby"}
    for name, cells in by_name.items():
        assert int(cells[2]) > 0, name  # writes were acknowledged
        assert cells[3] == "0/0", name  # none lost, nor their audit rows
        assert cells[5] == "0", name  # no internal
    assert "unavailable" in by_name["fast restart"][4]  # the restart was felt, and answered so
    assert by_name["SIGTERM"][9].startswith("exit 0 ")  # a clean stop, then served again
    assert "unavailable" in by_name["failover to the standby"][4]  # no primary for a while
