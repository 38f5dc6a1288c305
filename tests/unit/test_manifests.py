"""The Kubernetes manifests as a cluster would take them: valid against the
Kubernetes schemas (offline, strictly: an unknown field fails), and saying
what the service needs: non-root on a read-only root filesystem, probes on
its health endpoints, its Secrets, a stop that fits in the grace period,
and a ServiceMonitor that finds the metrics port."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hostauth.runtime.supervisor import STOP_WAIT_S
from hostauth.transport.http_server import SHUTDOWN_GRACE_S
from tests.support.processes import ROOT

FOLDER = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests are for (a pre-stop `sleep` needs 1.30).
VERSION = "1.33.0"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FOLDER / name).read_text())
    return doc


CORE = sorted(p.name for p in FOLDER.glob("*.yaml") if p.name != "servicemonitor.yaml")


@pytest.mark.parametrize("name", CORE)
def test_each_manifest_is_valid_against_the_kubernetes_schemas(name: str) -> None:
    kubernetes_validate.validate(_load(name), VERSION, strict=True)


def test_a_misspelt_field_is_refused_so_the_check_means_something() -> None:
    deployment = copy.deepcopy(_load("deployment.yaml"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSION, strict=True)


def test_the_deployment_runs_unprivileged_with_probes_secrets_and_a_stop_within_its_grace() -> None:
    pod = _load("deployment.yaml")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"hostauth-tls", "hostauth-keyring"}
    assert any(
        e["name"] == "DATABASE_URL" and "secretKeyRef" in e["valueFrom"]
        for e in container["env"]
        if "valueFrom" in e
    )
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])  # TMPDIR, writable
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pause + SHUTDOWN_GRACE_S + STOP_WAIT_S


def test_ports_agree_between_image_deployment_service_and_servicemonitor() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (container,) = _load("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for name, env in (
        ("connect", "HOSTAUTH_HTTP_ADDR"),
        ("grpc", "HOSTAUTH_GRPC_ADDR"),
        ("metrics", "HOSTAUTH_METRICS_ADDR"),
    ):
        assert f"{env}=:{ports[name]}" in dockerfile, name
    service = _load("service.yaml")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    monitor = _load("servicemonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert Path(FOLDER / "README.md").exists()
