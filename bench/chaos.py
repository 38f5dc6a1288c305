"""`make chaos`: faults under load, one scenario after another against one
service (`serve --workers 2` on a PostgreSQL of its own, fsync on), and a
table of what each did: calls, acknowledged, lost (acknowledged but absent
from the database, audit rows included), failures by code, `internal`s, the
time from the fault's end to the first success, and every worker's memory
and open files before and after. Exits 1 when a scenario lost an
acknowledged write, answered `internal`, or left a worker dead.

Loopback only; each scenario takes a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import httpx
from google.protobuf import json_format

from bench.fixture import Fixture, Service, service, setup
from bench.idle_connections import _idle, _trickling
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.runtime.embedded_pg import EmbeddedPostgres

WORKERS = 2
SOAK_S = 20.0
DB_TIMEOUT_S = 3.0  # the service's HOSTAUTH_DB_TIMEOUT_S here, so a held lock outlives it quickly


CREATE = "gitpod.v1.RunnerConfigurationService/CreateHostAuthenticationToken"


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _request() -> pb.CreateHostAuthenticationTokenRequest:
    return pb.CreateHostAuthenticationTokenRequest(
        runner_id=str(uuid.uuid4()), host="github.com", token="gho_chaos", refresh_token="ghr_chaos"
    )


class Wire:
    """Creates over one wire: grpc, connect-proto or connect-json."""

    def __init__(self, svc: Service, name: str, key: str) -> None:
        self.name = name
        self._auth = f"Bearer {key}"
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc}")
        self._grpc = self._channel.unary_unary(
            f"/{CREATE}",
            request_serializer=pb.CreateHostAuthenticationTokenRequest.SerializeToString,
            response_deserializer=pb.CreateHostAuthenticationTokenResponse.FromString,
        )
        self._http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http}", timeout=15)

    async def create(self) -> str:
        request = _request()
        if self.name == "grpc":
            try:
                reply = await self._grpc(request, metadata=(("authorization", self._auth),), timeout=15)
            except grpc.aio.AioRpcError as exc:
                raise Refused(exc.code().name.lower()) from None
            return str(reply.token.id)
        proto = self.name == "connect-proto"
        body = request.SerializeToString() if proto else json_format.MessageToJson(request).encode()
        kind = "application/proto" if proto else "application/json"
        try:
            response = await self._http.post(
                f"/{CREATE}", content=body, headers={"content-type": kind, "authorization": self._auth}
            )
        except httpx.HTTPError:
            raise Refused("connection lost") from None
        if response.status_code != 200:
            raise Refused(str(response.json().get("code", response.status_code)))
        if proto:
            return str(pb.CreateHostAuthenticationTokenResponse.FromString(response.content).token.id)
        return str(response.json()["token"]["id"])

    async def close(self) -> None:
        await self._channel.close(None)
        await self._http.aclose()


@dataclass
class Outcome:
    calls: int = 0
    acknowledged: list[str] = field(default_factory=list)
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    successes: list[float] = field(default_factory=list)


async def _load(wires: list[Wire], stop: asyncio.Event, outcome: Outcome) -> None:
    async def writer(wire: Wire) -> None:
        while not stop.is_set():
            outcome.calls += 1
            try:
                token_id = await wire.create()
            except Refused as exc:
                outcome.failed[exc.code] += 1
                await asyncio.sleep(0.05)
                continue
            outcome.acknowledged.append(token_id)
            outcome.successes.append(time.monotonic())

    await asyncio.gather(*(writer(w) for w in wires for _ in range(4)))


def _workers(svc: Service) -> list[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{svc.proc.pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{svc.proc.pid}/task/{task}/children") as f:
            found.update(int(c) for c in f.read().split())
    return sorted(found)


def _footprint(svc: Service) -> str:
    """Each worker's RSS in MiB and open files, as `rss/files`."""
    parts = []
    for pid in _workers(svc):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
            parts.append(f"{rss_kb // 1024}/{len(os.listdir(f'/proc/{pid}/fd'))}")
    return " ".join(parts)


@dataclass
class Scenario:
    name: str
    fault: Callable[[], Awaitable[None]]


class Chaos:
    def __init__(self, pg: EmbeddedPostgres, fixture: Fixture, svc: Service) -> None:
        self.pg, self.fixture, self.svc = pg, fixture, svc

    async def fast_restart(self) -> None:
        self.pg.stop(keep_address=True)
        await asyncio.sleep(1.0)
        self.pg.start()

    async def immediate_restart(self) -> None:
        self.pg.stop(keep_address=True, immediate=True)
        await asyncio.sleep(1.0)
        self.pg.start()

    async def lock_past_the_timeout(self) -> None:
        conn = await asyncpg.connect(self.fixture.dsn)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE host_authentication_tokens IN ACCESS EXCLUSIVE MODE")
                await asyncio.sleep(DB_TIMEOUT_S + 2)
        finally:
            await conn.close()

    async def sigkill_a_worker(self) -> None:
        os.kill(_workers(self.svc)[0], signal.SIGKILL)
        await asyncio.sleep(2.0)

    async def sigkill_a_worker_during_an_outage(self) -> None:
        self.pg.stop(keep_address=True)
        os.kill(_workers(self.svc)[0], signal.SIGKILL)
        await asyncio.sleep(3.0)
        self.pg.start()

    async def idle_connections(self) -> None:
        with _idle((self.svc.http, self.svc.grpc), 2000):
            await asyncio.sleep(3.0)

    async def trickling_connections(self) -> None:
        with _trickling((self.svc.http, self.svc.grpc), 200):
            await asyncio.sleep(3.0)

    async def malformed_requests(self) -> None:
        """Bodies that do not decode, oversized ones, and bytes that are not
        HTTP, on every wire; each must be refused without an internal."""
        auth = {"authorization": f"Bearer {self.fixture.key}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.svc.http}", timeout=15) as http:
            for kind, body in (
                ("application/proto", b"\xff\xff\xff"),
                ("application/json", b"{not json"),
                ("application/json", b'{"runnerId": 7}'),
                ("application/proto", b"\x00" * (2 << 20)),
            ):
                for _ in range(20):
                    response = await http.post(
                        f"/{CREATE}", content=body, headers={"content-type": kind, **auth}
                    )
                    code = response.json().get("code") if response.content else response.status_code
                    if code == "internal" or response.status_code >= 500:
                        raise SystemExit(f"a malformed {kind} body answered {response.status_code} {code}")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.svc.grpc}") as channel:
            raw = channel.unary_unary(f"/{CREATE}", request_serializer=None, response_deserializer=None)
            for payload in (b"\xff\xff\xff", b"\x00" * (2 << 20)):
                for _ in range(20):
                    try:
                        await raw(payload, metadata=(("authorization", auth["authorization"]),), timeout=15)
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                            raise SystemExit(f"a malformed gRPC message answered {exc.code()}") from None
        for port in (self.svc.http, self.svc.grpc):
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"\x16\x03\x01 not a protocol at all\r\n\r\n")

    async def soak(self) -> None:
        await asyncio.sleep(SOAK_S)


async def _lost(dsn: str, acknowledged: list[str]) -> tuple[int, int]:
    """Acknowledged Creates absent from the tokens, and from the audit trail."""
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM host_authentication_tokens WHERE id = ANY($1::uuid[])", acknowledged
        )
        audited = await conn.fetchval(
            "SELECT count(DISTINCT token_id) FROM audit_events"
            " WHERE method = 'CreateHostAuthenticationToken' AND token_id = ANY($1::uuid[])",
            acknowledged,
        )
    finally:
        await conn.close()
    return len(acknowledged) - stored, len(acknowledged) - audited


async def _run(chaos: Chaos, scenario: Scenario, key: str) -> tuple[list[str], bool]:
    svc = chaos.svc
    wires = [Wire(svc, name, key) for name in ("grpc", "connect-proto", "connect-json")]
    before = _footprint(svc)
    outcome, stop = Outcome(), asyncio.Event()
    load = asyncio.create_task(_load(wires, stop, outcome))
    await asyncio.sleep(1.0)
    await scenario.fault()
    ended = time.monotonic()
    deadline = ended + 30
    while not any(t > ended for t in outcome.successes) and time.monotonic() < deadline:  # noqa: ASYNC110 # polls the load's record
        await asyncio.sleep(0.05)
    first = next((t - ended for t in outcome.successes if t > ended), None)
    await asyncio.sleep(1.0)
    stop.set()
    await load
    for wire in wires:
        await wire.close()
    lost_rows, lost_audit = await _lost(chaos.fixture.dsn, outcome.acknowledged)
    alive = svc.proc.poll() is None and len(_workers(svc)) == WORKERS
    internal = outcome.failed.get("internal", 0)
    failed = ", ".join(f"{code} {n}" for code, n in sorted(outcome.failed.items())) or "-"
    row = [
        scenario.name,
        str(outcome.calls),
        str(len(outcome.acknowledged)),
        f"{lost_rows}/{lost_audit}",
        failed,
        str(internal),
        "never" if first is None else f"{first:.2f}",
        before,
        _footprint(svc),
    ]
    ok = lost_rows == 0 and lost_audit == 0 and internal == 0 and alive and first is not None
    return row, ok


async def _main(pg: EmbeddedPostgres, fixture: Fixture, svc: Service, only: list[str] | None) -> bool:
    chaos = Chaos(pg, fixture, svc)
    scenarios = [
        Scenario("fast restart", chaos.fast_restart),
        Scenario("immediate stop and start", chaos.immediate_restart),
        Scenario("lock past the timeout", chaos.lock_past_the_timeout),
        Scenario("SIGKILL a worker", chaos.sigkill_a_worker),
        Scenario("SIGKILL a worker, database out", chaos.sigkill_a_worker_during_an_outage),
        Scenario("2,000 idle connections a port", chaos.idle_connections),
        Scenario("200 trickling connections a port", chaos.trickling_connections),
        Scenario("malformed and oversized requests", chaos.malformed_requests),
        Scenario(f"soak, {SOAK_S:g} s", chaos.soak),
    ]
    header = ["scenario", "calls", "acked", "lost rows/audit", "failed by code", "internal",
              "first success s", "workers MiB/files before", "after"]  # fmt: skip
    rows, all_ok = [], True
    for scenario in scenarios:
        if only and scenario.name not in only:
            continue
        row, ok = await _run(chaos, scenario, fixture.key)
        rows.append(row + ([] if ok else ["FAILED"]))
        all_ok &= ok
        print(f"{scenario.name}: {'ok' if ok else 'FAILED'}", flush=True)
    for row in rows:
        if row[0].startswith("soak"):
            grown = sum(
                int(a.split("/")[0]) - int(b.split("/")[0])
                for a, b in zip(row[8].split(), row[7].split(), strict=False)
            )
            print(
                f"soak: the workers grew {grown} MiB together over {row[1]} calls"
                f" ({grown * 100_000 / max(int(row[1]), 1):.1f} MiB per 100,000 calls)"
            )
    print("\n| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return all_ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="only these scenarios (by name)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hostauth-chaos-"))
    folder.chmod(0o755)
    pg = EmbeddedPostgres(folder / "pgdata", fsync=True)  # an acknowledged commit survives a crash
    admin = pg.start()
    os.environ["HOSTAUTH_DB_TIMEOUT_S"] = str(DB_TIMEOUT_S)
    try:
        fixture = asyncio.run(setup(admin))
        with service(fixture, generate_keyring_json("chaos-1"), WORKERS, folder) as svc:
            ok = asyncio.run(_main(pg, fixture, svc, args.only))
            log = svc.log.read_text()
        print(f"\ntracebacks in the service's log: {log.count('Traceback')}; lines: {log.count(chr(10))}")
    finally:
        pg.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
