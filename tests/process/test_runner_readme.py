"""The README's "The runner's side": every command run, in order, against
`serve --dev`, the Python example included; each answer checked."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from nacl.public import PrivateKey, SealedBox

from tests.support.processes import ROOT, ServerProcess
from tests.support.sensitive import remember

MARK = "@@@ block done @@@"


def section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## The runner's side", 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    return [b.strip() for b in re.findall(rf"```{language}\n(.*?)```", section(), flags=re.DOTALL)]


METHODS = [
    "RunnerConfigurationService/CreateSCMIntegration",
    "RunnerConfigurationService/CreateHostAuthenticationToken",
    "RunnerInteractionService/Signup",
    "RunnerInteractionService/GetHostAuthenticationTokenValue",
    "RunnerConfigurationService/GetSCMIntegration",
    "RunnerConfigurationService/ListSCMIntegrations",
    "RunnerConfigurationService/UpdateSCMIntegration",
    "RunnerConfigurationService/DeleteSCMIntegration",
]


def test_every_new_method_has_its_curl_example() -> None:
    shell = blocks("sh")
    called = [m for b in shell for m in METHODS if f"gitpod.v1.{m}" in b]
    assert called == METHODS
    assert all("curl" in b for b in shell[1:])
    assert len(blocks("python")) == 1


async def test_the_readme_round(
    dev_server: ServerProcess, dev_api_key: str, dev_dsn: str, tmp_path: Path
) -> None:
    for literal in ("gho_xxxxxxxxxxxx", "ghr_xxxxxxxxxxxx", "cs_xxxxxxxxxxxx", "cs_yyyyyyyyyyyy"):
        remember(literal)
    shell = blocks("sh")
    (python,) = blocks("python")
    # The Python example after the sealed read (it signs up with a key of
    # its own), before the clean-up.
    steps = [*shell[:-1], f"python - <<'PY'\n{python}\nPY", shell[-1]]
    script = "\n".join(f"{step}\necho\necho '{MARK}'" for step in steps)
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{dev_server.http_port}")
    script = script.replace(".venv/bin/", f"{ROOT}/.venv/bin/").replace(
        "python -", f"{ROOT}/.venv/bin/python -"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,  # runner-key.pem lands here
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOSTAUTH_DEV_API_KEY": dev_api_key, "DATABASE_URL": dev_dsn},
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().split(MARK)
    assert out[0].strip() == ""  # the key pair and credential, made silently
    assert out[1].strip() == ""  # the integration's id went into INTEGRATION_ID
    token = json.loads(out[2])["token"]
    assert token["integrationId"]
    assert token["runnerId"] == "d2c94c27-3b76-4a42-b88c-95a85e392c68"
    assert json.loads(out[3]) == {"runnerId": "d2c94c27-3b76-4a42-b88c-95a85e392c68"}
    sealed = json.loads(out[4])
    pem = load_pem_private_key((tmp_path / "runner-key.pem").read_bytes(), password=None)
    assert isinstance(pem, X25519PrivateKey)
    raw = pem.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    box = SealedBox(PrivateKey(raw))
    assert box.decrypt(base64.b64decode(sealed["value"])) == b"gho_xxxxxxxxxxxx"
    assert box.decrypt(base64.b64decode(sealed["refreshToken"])) == b"ghr_xxxxxxxxxxxx"
    assert sealed["tokenId"] == token["id"]
    integration = json.loads(out[5])["integration"]
    assert integration["oauth"]["clientId"] == "client_id"
    assert box.decrypt(base64.b64decode(integration["oauth"]["encryptedClientSecret"])) == b"cs_xxxxxxxxxxxx"
    listed = json.loads(out[6])["integrations"]
    assert [i["id"] for i in listed] == [integration["id"]]
    assert json.loads(out[7]) == {}  # Update
    assert out[8].split()[0] == token["id"]  # the Python example printed the token's id
    assert json.loads(out[9]) == {}  # Delete
    for plain in (b"gho_xxxxxxxxxxxx", b"ghr_xxxxxxxxxxxx", b"cs_xxxxxxxxxxxx", b"cs_yyyyyyyyyyyy"):
        assert plain not in result.stdout
