"""The telemetry settings as an operator writes them, and the bounded
values the metrics' labels take."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.utils import floatToGoString

from hostauth.config import Address, ConfigError, Settings, tracing_configured
from hostauth.errors import ErrorCode
from hostauth.telemetry.calls import CODE_NAMES, CallTelemetry, code_name
from hostauth.telemetry.gauges import HOST_KINDS, host_kind
from hostauth.telemetry.metrics import CALL_BUCKETS
from hostauth.telemetry.tally import CallTally
from tests.support.processes import ROOT

BASE = {"DATABASE_URL": "postgresql://localhost/x"}


def test_metrics_listen_on_loopback_by_default_and_an_empty_address_turns_them_off() -> None:
    assert Settings.from_env(BASE).metrics_addr == Address("127.0.0.1", 9464)
    assert Settings.from_env({**BASE, "HOSTAUTH_METRICS_ADDR": ":9100"}).metrics_addr == Address(
        "0.0.0.0", 9100
    )
    assert Settings.from_env({**BASE, "HOSTAUTH_METRICS_ADDR": ""}).metrics_addr is None


def test_a_bad_metrics_address_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="HOSTAUTH_METRICS_ADDR"):
        Settings.from_env({**BASE, "HOSTAUTH_METRICS_ADDR": "localhost"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("text", "INFO", False)),
        (
            {"HOSTAUTH_LOG_FORMAT": "JSON", "HOSTAUTH_LOG_LEVEL": "debug", "HOSTAUTH_ACCESS_LOG": "on"},
            ("json", "DEBUG", True),
        ),
    ],
)
def test_log_settings(env: dict[str, str], expected: tuple[str, str, bool]) -> None:
    settings = Settings.from_env({**BASE, **env})
    assert (settings.log_format, settings.log_level, settings.access_log) == expected


@pytest.mark.parametrize(("name", "value"), [("HOSTAUTH_LOG_FORMAT", "xml"), ("HOSTAUTH_LOG_LEVEL", "loud")])
def test_a_bad_log_setting_names_itself_and_the_choices(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as refused:
        Settings.from_env({**BASE, name: value})
    assert "must be one of" in str(refused.value)


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "hostauth"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_otel_variables_ask_for_traces(env: dict[str, str], on: bool) -> None:
    assert tracing_configured(env) is on
    assert Settings.from_env({**BASE, **env}).tracing is on


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("github.com", "github"),
        ("GitHub.com", "github"),
        ("github.example.com", "github"),
        ("gitlab.com", "gitlab"),
        ("gitlab.internal.example:8443", "gitlab"),
        ("bitbucket.org", "bitbucket"),
        ("git.example.com", "other"),
        ("evil-github.com.example", "other"),
    ],
)
def test_hosts_reduce_to_a_bounded_kind(host: str, kind: str) -> None:
    assert host_kind(host) == kind
    assert kind in HOST_KINDS


def test_every_core_code_has_its_go_grpc_prometheus_name() -> None:
    assert set(CODE_NAMES) == set(ErrorCode)
    assert CODE_NAMES[ErrorCode.INVALID_ARGUMENT] == "InvalidArgument"
    assert code_name("deadline_exceeded") == "DeadlineExceeded"
    assert code_name("something_else") == "Unknown"


def test_telemetry_off_records_nothing() -> None:
    off = CallTelemetry(metrics=False, access_log=False)
    assert not off.active
    assert off.begin("GetHostAuthenticationToken", "grpc") is None


def test_without_tracing_the_sdk_is_never_imported() -> None:
    """Tracing off costs nothing: serving imports no part of OpenTelemetry's SDK."""
    probe = (
        "import sys, hostauth.cli.main, hostauth.runtime.worker;"
        "sdk = ('opentelemetry.sdk', 'opentelemetry.instrumentation');"
        "print(sorted(m for m in sys.modules if m.startswith(sdk)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout


def test_a_flushed_tally_is_what_observing_each_call_would_have_exported() -> None:
    registry = CollectorRegistry()
    direct = Histogram("direct_seconds", "each call observed", buckets=CALL_BUCKETS, registry=registry)
    tally = CallTally()
    method = tally.of("svc", "Get", "grpc")
    durations = [0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.3, 2.0, 10.0, 11.0, 0.0025]
    before = REGISTRY.get_sample_value("grpc_server_handling_seconds_count", _LABELS) or 0.0
    for elapsed in durations:
        direct.observe(elapsed)
        method.started += 1
        method.answered("OK", elapsed)
    tally.flush()
    for bound in (*CALL_BUCKETS, float("inf")):
        le = floatToGoString(bound)
        mine = REGISTRY.get_sample_value("grpc_server_handling_seconds_bucket", {**_LABELS, "le": le})
        assert mine == registry.get_sample_value("direct_seconds_bucket", {"le": le}), le
    assert REGISTRY.get_sample_value("grpc_server_handling_seconds_count", _LABELS) - before == len(durations)
    handled = REGISTRY.get_sample_value("grpc_server_handled_total", {**_LABELS, "grpc_code": "OK"})
    assert handled == len(durations)
    tally.flush()  # nothing new: nothing added
    assert REGISTRY.get_sample_value("grpc_server_handled_total", {**_LABELS, "grpc_code": "OK"}) == handled


_LABELS = {"grpc_service": "svc", "grpc_method": "Get", "grpc_type": "unary", "transport": "grpc"}
