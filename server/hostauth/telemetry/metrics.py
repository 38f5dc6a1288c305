"""Every metric the service exports, defined once.

The names and labels of the per-call metrics are go-grpc-prometheus's, with
a `transport` label (grpc, connect_json, connect_proto) so that one family
covers both ports. No label takes a value a caller chooses freely: methods
are the service's own (an unknown path or method is not counted), codes
and transports a fixed set, and hosts are reduced to a kind
(`host_kind`).

Under the supervisor every worker writes its values to files in a
directory the supervisor made (prometheus-client's multiprocess mode, set
by PROMETHEUS_MULTIPROC_DIR before this module is imported) and one scrape
of the supervisor sums them (exposition.py). Each gauge says how the
workers' values combine.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Unary calls take about a millisecond: buckets from 0.5 ms to 10 s.
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

_CALL = ("grpc_service", "grpc_method", "grpc_type", "transport")

started = Counter("grpc_server_started_total", "RPCs started on the server.", _CALL)
handled = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code.", (*_CALL, "grpc_code")
)
handling_seconds = Histogram(
    "grpc_server_handling_seconds",
    "Time from the call's arrival to its answer, in seconds.",
    _CALL,
    buckets=CALL_BUCKETS,
)

secret_reads = Counter(
    "hostauth_secret_reads_total",
    "Secret reads (GetHostAuthenticationTokenValue) by outcome: served, or the refusal's code.",
    ("outcome",),
)
audit_write_failures = Counter(
    "hostauth_audit_write_failures_total",
    "Audit rows that could not be written (for a secret read: no secret was returned).",
)
audit_stream_failures = Counter(
    "hostauth_audit_stream_failures_total",
    "Audit events whose line could not be written to HOSTAUTH_AUDIT_SINK (their rows are in the database).",
)
batch_size = Histogram(
    "hostauth_db_batch_size",
    "Calls answered by one shared statement, by statement.",
    ("statement",),
    buckets=BATCH_BUCKETS,
)
pool_connections = Gauge(
    "hostauth_db_pool_connections",
    "Database connections of the workers' pools, by state (in_use, idle).",
    ("state",),
    multiprocess_mode="livesum",
)
pool_waiting = Gauge(
    "hostauth_db_pool_waiting",
    "Calls waiting for a pooled database connection.",
    multiprocess_mode="livesum",
)
database_up = Gauge(
    "hostauth_database_up",
    "1 when every worker's last probe of the database (each second) was answered in time, else 0.",
    multiprocess_mode="livemin",
)
oauth_refreshes = Counter(
    "hostauth_oauth_refreshes_total",
    "OAuth refreshes at the provider, by provider (github, gitlab, bitbucket) and outcome"
    " (refreshed, rejected, rate_limited, failed, unreachable, refused).",
    ("provider", "outcome"),
)
oauth_refresh_waiters = Counter(
    "hostauth_oauth_refresh_waiters_total",
    "Secret reads that waited for a refresh another caller (in this process or another) was making.",
)
oauth_refresh_wait_seconds = Histogram(
    "hostauth_oauth_refresh_wait_seconds",
    "Time secret reads spent waiting for a refresh, theirs or another's.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

kms_calls = Counter(
    "hostauth_kms_calls_total",
    "Calls to the KMS by operation and outcome (ok, refused, unavailable).",
    ("operation", "outcome"),
)
data_key_cache = Counter(
    "hostauth_data_key_cache_total",
    "Lookups of unwrapped data keys in the KMS cache, by result (hit, miss).",
    ("result",),
)
# Read from the database by worker 0 at most once a minute (gauges.py).
encryption_keys = Gauge(
    "hostauth_encryption_keys",
    "Key-encryption keys in the registry, by state (primary, active, retired).",
    ("state",),
    multiprocess_mode="livemostrecent",
)
primary_key_age_seconds = Gauge(
    "hostauth_primary_key_age_seconds",
    "Seconds since the primary key became primary.",
    multiprocess_mode="livemostrecent",
)
rewrap_pending_rows = Gauge(
    "hostauth_rewrap_pending_rows",
    "Token rows with a secret under a key other than the primary (left to rewrap).",
    multiprocess_mode="livemostrecent",
)
expired_without_refresh = Gauge(
    "hostauth_tokens_expired_without_refresh",
    "Tokens past their expiry with no refresh token, by host kind (github, gitlab, bitbucket, other).",
    ("host_kind",),
    multiprocess_mode="livemostrecent",
)
database_gauges_updated = Gauge(
    "hostauth_database_gauges_updated_timestamp_seconds",
    "When the gauges read from the database were last computed (Unix time).",
    multiprocess_mode="livemostrecent",
)

KMS_OPERATIONS = ("generate_data_key", "encrypt", "decrypt", "describe_key")
KMS_OUTCOMES = ("ok", "refused", "unavailable")


def known_series(service: str, methods: tuple[str, ...], transports: tuple[str, ...]) -> None:
    """Every series whose labels are known before any call, at 0: a rate
    over a series that appears only with its first call misses that call,
    and an alert on it has nothing to read until then (under the
    supervisor a family with no series is not exported at all)."""
    for method in methods:
        for transport in transports:
            labels = (service, method, "unary", transport)
            started.labels(*labels)
            handling_seconds.labels(*labels)
            handled.labels(*labels, "OK")
    secret_reads.labels("served")
    for operation in KMS_OPERATIONS:
        for outcome in KMS_OUTCOMES:
            kms_calls.labels(operation, outcome)
    for result in ("hit", "miss"):
        data_key_cache.labels(result)
    for statement in ("insert", "audit", "read_secrets", "get"):
        batch_size.labels(statement)
