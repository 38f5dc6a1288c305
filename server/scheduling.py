"""Linux's SCHED_BATCH policy for the threads of a process pinned to one core.

A pinned worker's event loop and granian's runtime thread (which reads the
requests and writes the responses) hand every Connect request back and forth.
Under the normal policy each hand-off wakes the other thread, which preempts
the one that woke it: a context switch there and one back, on the one core
they share. SCHED_BATCH is the same fair share of the CPU at the same nice
value, without that wakeup preemption: a woken thread runs when the running
one waits or its slice ends. Other processes' threads (PostgreSQL's, a load
tool's) still preempt ours when they wake. No privilege is needed.

Measured with make bench's loads (2 pinned workers, A/B, rounds alternating,
2026-11-30, two sittings): GetValue over Connect proto +21 % and +6 % at
c=64, Create +30 % and +39 %, Get at c=16 +47 %, List +5 %, the gRPC rows
1.00-1.10x. grpc's own threads keep the normal policy: under SCHED_BATCH
too, Get over gRPC measured 0.78x and Create 0.90x. A process whose threads
may use several cores gains nothing (GetValue and Create 0.88-0.94x as a
lone, unpinned process), so it is left as it is.
"""

from __future__ import annotations

import os


def shares_one_core() -> bool:
    """Whether the calling thread may run on one CPU only, as every thread of
    a pinned worker does."""
    return hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) == 1


def schedule_as_batch() -> bool:
    """Put the calling thread, and the threads it starts from now on, under
    SCHED_BATCH; False where there is no such policy."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True
