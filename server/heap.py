"""Garbage-collector settings for a serving process.

Every request allocates a few hundred short-lived containers (messages,
records, dicts of headers), so with CPython's defaults the collector runs a
young-generation pass every 700 allocations and, now and then, a full pass
over everything: the modules, descriptors, pools and caches made at startup,
which never become garbage. Measured with `make bench` (GetValue, Connect
proto, c=64, 2 workers): freezing the startup heap and collecting the young
generation every 20,000 allocations took p99 from 39-42 ms to 24-26 ms.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def freeze_startup_heap() -> None:
    """Call once the server is up: what exists now is never collected again,
    and young collections run less often."""
    gc.collect()
    gc.freeze()  # moved to a permanent generation that no collection visits
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
