"""The per-call metrics, counted in plain integers and written to
prometheus-client's metrics once a second (`flush`).

Under the supervisor a prometheus-client increment is a locked write to a
memory-mapped file, and a call makes four (started, handled, the
histogram's bucket and sum): a visible share of a call that costs a
millisecond of CPU across the service (docs/benchmarks.md, Telemetry).
Counted here, a call costs a few integer additions and a bisect; a scrape
sees the counts of up to a second ago, and a worker killed outright loses
at most its last second.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from hostauth.telemetry import metrics

# The histogram's upper bounds, +Inf last, as prometheus-client keeps them.
_BOUNDS = (*metrics.CALL_BUCKETS, float("inf"))


class MethodTally:
    """The counts of one (method, transport) since the last flush."""

    __slots__ = ("buckets", "handled", "labels", "seconds", "started")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.started = 0
        self.handled: dict[str, int] = {}
        self.buckets = [0] * len(_BOUNDS)
        self.seconds = 0.0

    def answered(self, code: str, elapsed: float) -> None:
        handled = self.handled
        handled[code] = handled.get(code, 0) + 1
        # The first bound at or above the value: the bucket prometheus-client's observe() picks.
        self.buckets[bisect_left(_BOUNDS, elapsed)] += 1
        self.seconds += elapsed


class CallTally:
    """Every MethodTally of the process, and the secret reads by outcome."""

    __slots__ = ("_methods", "reads")

    def __init__(self) -> None:
        self._methods: dict[tuple[str, str, str], MethodTally] = {}
        self.reads: dict[str, int] = {}

    def of(self, service: str, method: str, transport: str) -> MethodTally:
        key = (service, method, transport)
        tally = self._methods.get(key)
        if tally is None:
            tally = self._methods[key] = MethodTally((service, method, "unary", transport))
        return tally

    def flush(self) -> None:
        """Add the counts since the last flush to the exported metrics."""
        for tally in self._methods.values():
            if tally.started:
                started, tally.started = tally.started, 0
                metrics.started.labels(*tally.labels).inc(started)
            if not tally.handled:
                continue
            handled, tally.handled = tally.handled, {}
            for code, n in handled.items():
                metrics.handled.labels(*tally.labels, code).inc(n)
            buckets, tally.buckets = tally.buckets, [0] * len(_BOUNDS)
            seconds, tally.seconds = tally.seconds, 0.0
            _add_observations(metrics.handling_seconds.labels(*tally.labels), buckets, seconds)
        if self.reads:
            reads, self.reads = self.reads, {}
            for outcome, n in reads.items():
                metrics.secret_reads.labels(outcome).inc(n)


def _add_observations(child: Any, buckets: list[int], seconds: float) -> None:
    """Many observations at once into a histogram child: prometheus-client
    has no public call for it, so its per-bucket values are added to as
    observe() would, once per bucket rather than once per observation."""
    for value, n in zip(child._buckets, buckets, strict=True):
        if n:
            value.inc(n)
    child._sum.inc(seconds)
