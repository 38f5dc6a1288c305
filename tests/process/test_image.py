"""The container image, as far as a machine without a container engine can
run it: the Dockerfile's final ENTRYPOINT with its ENV, from a `make dist`
wheel installed with the service's lock alone into a clean virtualenv,
outside the checkout; given what the Kubernetes Deployment gives (the
database URL, TLS files, the keyring file), it serves; its HEALTHCHECK
command says ready; its STOPSIGNAL stops it cleanly.

Not exercised here: the image build itself, the non-root user, the
read-only root filesystem and the slim base's contents."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.certs import make_ca, server_cert
from tests.support.db import create_database
from tests.support.processes import ROOT, free_port
from tests.support.scrape import scrape
from tests.support.serving import TEST_KEYRING_JSON


@dataclass
class Stage:
    """The last stage of a Dockerfile, as a container of the image runs."""

    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    stopsignal: str = ""


def final_stage(dockerfile: str) -> Stage:
    text = dockerfile.replace("\\\n", " ")
    found = Stage()
    for line in re.split(r"^FROM .*$", text, flags=re.M)[-1].splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            found.env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
        elif word == "ENTRYPOINT":
            found.entrypoint = json.loads(rest)
        elif word == "HEALTHCHECK":
            found.healthcheck = json.loads(rest.split("CMD", 1)[1])
        elif word == "STOPSIGNAL":
            found.stopsignal = rest.strip()
    return found


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)


def _start(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _install(folder: Path) -> Path:
    """A clean virtualenv with the locked service dependencies and the wheel."""
    subprocess.run(["make", "dist"], cwd=ROOT, check=True, capture_output=True)
    (wheel,) = (ROOT / "dist").glob("hostauth-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", str(ROOT / "requirements.lock")], check=True)
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
    return venv


async def test_the_image_entrypoint_serves_from_a_clean_install(admin_dsn: str, tmp_path: Path) -> None:
    image = final_stage((ROOT / "Dockerfile").read_text())
    assert image.entrypoint == ["hostauth", "serve"]
    assert image.stopsignal == "SIGTERM"
    venv = await asyncio.to_thread(_install, tmp_path)
    assert not (venv / "bin" / "pytest").exists()  # production dependencies only
    dsn = await create_database(admin_dsn)
    keyring = tmp_path / "keyring.json"
    keyring.write_text(TEST_KEYRING_JSON)
    cert, key = server_cert(make_ca("image CA")).write(tmp_path, "server")
    env = dict(image.env)
    ports = {
        name: free_port() for name in ("HOSTAUTH_HTTP_ADDR", "HOSTAUTH_GRPC_ADDR", "HOSTAUTH_METRICS_ADDR")
    }
    for name, port in ports.items():
        assert env[name].startswith(":")  # every address, as in a container
        env[name] = f":{port}"
    env |= {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
        "HOSTAUTH_KEYRING_FILE": str(keyring),  # the image's path is a mounted secret
        "DATABASE_URL": dsn,
        "HOSTAUTH_TLS_CERT_FILE": str(cert),
        "HOSTAUTH_TLS_KEY_FILE": str(key),
        "HOSTAUTH_WORKERS": "2",
    }
    version = await asyncio.to_thread(_run, ["hostauth", "--version"], env, tmp_path)
    assert re.fullmatch(r"hostauth \S+ \(commit [0-9a-f]{12}\)\n", version.stdout), version.stdout
    log = tmp_path / "serve.log"
    proc = _start(image.entrypoint, env, tmp_path, log)
    try:
        for _ in range(300):
            check = await asyncio.to_thread(_run, image.healthcheck, env, tmp_path)
            if check.returncode == 0:
                break
            assert proc.poll() is None, log.read_text()
            await asyncio.sleep(0.2)
        assert check.returncode == 0, (check.stdout, log.read_text())
        async with httpx.AsyncClient(verify=False) as http:  # the test's own certificate
            health = await http.get(f"https://127.0.0.1:{ports['HOSTAUTH_HTTP_ADDR']}/readyz")
        assert health.json()["ready"] is True
        samples = await scrape(ports["HOSTAUTH_METRICS_ADDR"])
        assert any(name == "hostauth_build_info" for name, _ in samples)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # JSON logs
        assert any("serving Connect on https://" in line["message"] for line in lines)
    finally:
        proc.send_signal(getattr(signal, image.stopsignal))
        status = proc.wait(timeout=30)
    assert status == 0, log.read_text()
    assert not (ROOT / "server" / "hostauth" / "COMMIT").exists()  # make dist leaves the checkout as it was
    assert os.environ.get("TMPDIR") != str(tmp_path)
