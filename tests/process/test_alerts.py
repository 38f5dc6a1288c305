"""The alerting rules name only what the service exports: a scrape of a
running service has every metric each alert expression reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.support.db import create_database
from tests.support.processes import ROOT, start_server, wait_serving
from tests.support.scrape import exported_names
from tests.support.serving import TEST_KEYRING_JSON

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"

# PromQL's own words: functions, aggregations, keywords.
PROMQL = frozenset(
    {"sum", "min", "max", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "time", "by",
     "without", "on", "ignoring", "and", "or", "unless", "bool", "offset", "absent", "le"}
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: its identifiers, once label
    matchers, groupings, ranges and strings are taken out."""
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r'"[^"]*"', " ", expr)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return words - PROMQL


def test_the_rules_file_reads_as_prometheus_rule_groups() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert {"alert", "expr", "labels", "annotations"} <= set(rules[0])
    alerts = {rule["alert"] for rule in rules}
    for needed in (
        "ErrorRatio",
        "LatencyP99",
        "DatabaseDown",
        "AuditWrites",
        "Kms",
        "PrimaryKeyTooOld",
        "Rewrap",
    ):
        assert any(needed in name for name in alerts), needed
    assert metric_names('sum(rate(a_total{x="y"}[5m])) by (le) / b') == {"a_total", "b"}


async def test_every_metric_an_alert_reads_is_exported(admin_dsn: str, log_dir: Path) -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    read = {name for group in doc["groups"] for rule in group["rules"] for name in metric_names(rule["expr"])}
    dsn = await create_database(admin_dsn)
    server = start_server(log_dir, {"DATABASE_URL": dsn, "HOSTAUTH_KEYRING": TEST_KEYRING_JSON})
    try:
        await wait_serving(server)
        exported = await exported_names(server.metrics_port)
        missing = {name for name in read if name not in exported}
        assert not missing, f"alerts read metrics the service does not export: {sorted(missing)}"
    finally:
        server.stop()
