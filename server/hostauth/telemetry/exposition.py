"""/metrics on its own address (HOSTAUTH_METRICS_ADDR), for the whole service.

Serving alone, the process answers from its own values. Under the
supervisor, the workers share the service's ports and a scrape there would
reach one of them at random; so each worker writes its values to files in
a directory the supervisor makes for the run (prometheus-client's
multiprocess mode: a counter's increment is a write to a memory-mapped
file) and the supervisor answers the scrape, summing them. A worker's
counts outlive it (a replacement's add to them: counters never go back),
its gauges go with it. Process metrics (CPU, memory, open files) are read
from /proc for the supervisor and each worker, labelled `worker`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from hostauth.cli.version import build
from hostauth.config import Address, Settings

log = logging.getLogger(__name__)

# prometheus-client reads this when first imported: the supervisor sets it
# in its workers' environment, never in its own.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Who to read process metrics of: (worker label, pid or "self").
Processes = Callable[[], Iterable[tuple[str, int | str]]]


class WorkerProcesses(Collector):
    """The process_* metrics of several processes, one series each, by `worker`."""

    def __init__(self, processes: Processes) -> None:
        self._processes = processes

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for label, pid in self._processes():
            reader = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for family in reader.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": label}, sample.value)
        yield from families.values()


class BuildInfo(Collector):
    def collect(self) -> Iterator[Metric]:
        version, commit = build()
        info = GaugeMetricFamily(
            "hostauth_build_info",
            "Always 1: the running version and commit, as labels.",
            labels=["version", "commit"],
        )
        info.add_metric([version, commit or "unknown"], 1)
        yield info


class MetricsEndpoint:
    """The HTTP server of /metrics (prometheus-client's, on a thread of its own)."""

    def __init__(self, addr: Address, registry: CollectorRegistry) -> None:
        try:
            self._server, self._thread = start_http_server(addr.port, addr.host, registry=registry)
        except OSError as exc:
            raise OSError(f"cannot listen on {addr} (metrics): {exc.strerror}") from None
        self.addr = Address(addr.host, self._server.server_port)
        log.info("metrics on http://%s/metrics", self.addr)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_own_metrics(addr: Address) -> MetricsEndpoint:
    """/metrics of this process alone (no supervisor): its own registry."""
    for default in list(REGISTRY._collector_to_names):  # the defaults prometheus-client registers
        if type(default).__name__ in ("ProcessCollector", "GCCollector", "PlatformCollector"):
            REGISTRY.unregister(default)
    REGISTRY.register(WorkerProcesses(lambda: [("0", "self")]))
    REGISTRY.register(BuildInfo())
    return MetricsEndpoint(addr, REGISTRY)


class SharedMetrics:
    """The supervisor's side of multiprocess mode: the directory the workers
    write to, and the endpoint that sums them; `workers` says which
    processes are the workers, (index, pid), once they run."""

    def __init__(self, addr: Address) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="hostauth-metrics-"))
        self.workers: Callable[[], Iterable[tuple[str, int]]] = list
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        registry.register(WorkerProcesses(lambda: [("supervisor", "self"), *self.workers()]))
        registry.register(BuildInfo())
        try:
            self.endpoint = MetricsEndpoint(addr, registry)
        except OSError:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def env(self) -> dict[str, str]:
        return {MULTIPROC_ENV: str(self.directory)}

    def worker_gone(self, pid: int) -> None:
        """Its gauges leave the sums; its counts stay."""
        mark_process_dead(pid, str(self.directory))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.endpoint.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def serving_metrics(settings: Settings, workers: int) -> Iterator[SharedMetrics | None]:
    """/metrics for `serve` (workers > 0) when an address is set: summed
    across workers by this process (the SharedMetrics to give the
    supervisor), or this process's own when it serves alone."""
    addr = settings.metrics_addr
    if addr is None or workers == 0:
        yield None
        return
    if workers == 1:
        own = serve_own_metrics(addr)
        try:
            yield None
        finally:
            own.close()
        return
    shared = SharedMetrics(addr)
    try:
        yield shared
    finally:
        shared.close()
