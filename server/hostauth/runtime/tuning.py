"""Process tuning for a serving process: its event loop, the garbage
collector, and the scheduling policy of a worker pinned to one core. Each
choice's measured effect is in docs/benchmarks.md (decisions)."""

from __future__ import annotations

import asyncio
import gc
import os

# Every grpc.aio call leaves a small reference cycle that only a collection
# frees: frequent young passes keep each one short (an event loop stopped
# for milliseconds shows in p99), where rare ones each scan thousands.
YOUNG_THRESHOLD = 2_000


def use_event_loop(kind: str) -> None:
    """uvloop (the default, markedly faster here) or the standard loop."""
    if kind == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def freeze_startup_heap() -> None:
    """Call once the server is up. Every request allocates a few hundred
    short-lived containers, and a full collection would walk the modules,
    descriptors, pools and caches made at startup, which never become
    garbage: they move to a permanent generation no collection visits."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def shares_one_core() -> bool:
    """Whether the calling thread may run on one CPU only, as every thread of
    a pinned worker does."""
    return hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) == 1


def schedule_as_batch() -> bool:
    """Put the calling thread, and the threads it starts from now on, under
    Linux's SCHED_BATCH; False where there is no such policy.

    A pinned worker's event loop and granian's runtime thread hand every
    Connect request back and forth on the one core they share. Under the
    normal policy each hand-off wakes the other thread, which preempts the
    one that woke it; SCHED_BATCH is the same fair share without that
    wakeup preemption. Other processes' threads still preempt ours. grpc's
    own threads keep the normal policy (they lose under SCHED_BATCH), and a
    process that may use several cores gains nothing, so it is left alone.
    No privilege is needed.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True
