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
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import grpc
import httpx
from google.protobuf import json_format
from google.protobuf.message import Message

from bench.fixture import Fixture, Service, service, setup
from bench.idle_connections import _idle, _trickling
from gitpod.v1 import runner_configuration_pb2 as pb
from hostauth.crypto.keyring import generate_keyring_json
from hostauth.runtime.embedded_pg import EmbeddedPostgres
from tests.support.db import fetch_value, make_standby_synchronous, until_true

WORKERS = 2
SOAK_S = 60.0
DB_TIMEOUT_S = 3.0  # the service's HOSTAUTH_DB_TIMEOUT_S here, so a held lock outlives it quickly


SERVICE = "gitpod.v1.RunnerConfigurationService"
CREATE = f"{SERVICE}/CreateHostAuthenticationToken"
M = TypeVar("M", bound=Message)


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _request() -> pb.CreateHostAuthenticationTokenRequest:
    return pb.CreateHostAuthenticationTokenRequest(
        runner_id=str(uuid.uuid4()), host="github.com", token="gho_chaos", refresh_token="ghr_chaos"
    )


class Wire:
    """Calls over one wire: grpc, connect-proto or connect-json."""

    def __init__(self, svc: Service, name: str, key: str) -> None:
        self.name = name
        self._auth = f"Bearer {key}"
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc}")
        self._http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http}", timeout=15)

    async def call(self, method: str, request: Message, reply: type[M]) -> M:
        """`method` of the tokens' service; Refused with the answer's code."""
        path = f"/{SERVICE}/{method}"
        if self.name == "grpc":
            stub = self._channel.unary_unary(
                path,
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply.FromString,
            )
            try:
                answer: M = await stub(request, metadata=(("authorization", self._auth),), timeout=15)
            except grpc.aio.AioRpcError as exc:
                raise Refused(exc.code().name.lower()) from None
            return answer
        proto = self.name == "connect-proto"
        body = request.SerializeToString() if proto else json_format.MessageToJson(request).encode()
        kind = "application/proto" if proto else "application/json"
        try:
            response = await self._http.post(
                path, content=body, headers={"content-type": kind, "authorization": self._auth}
            )
        except httpx.ConnectError:
            raise Refused("not listening") from None
        except httpx.HTTPError:
            raise Refused("connection lost") from None
        if response.status_code != 200:
            raise Refused(str(response.json().get("code", response.status_code)))
        if proto:
            return reply.FromString(response.content)
        return json_format.Parse(response.content, reply(), ignore_unknown_fields=True)

    async def create(self, runner_id: str | None = None) -> str:
        request = _request()
        if runner_id:
            request.runner_id = runner_id
        return str(
            (
                await self.call(
                    "CreateHostAuthenticationToken", request, pb.CreateHostAuthenticationTokenResponse
                )
            ).token.id
        )

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


def _rss_mib(svc: Service) -> int:
    """The workers' resident memory together, in MiB."""
    total_kb = 0
    for pid in _workers(svc):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            total_kb += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return total_kb // 1024


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
class Fault:
    """What a fault reports beside the load's outcome: a note for the table,
    whether it held, and the calls it made itself."""

    note: str = ""
    ok: bool = True
    calls: int = 0


@dataclass
class Scenario:
    name: str
    fault: Callable[[], Awaitable[Fault | None]]
    prepare: Callable[[], Awaitable[None]] | None = None  # before the load starts


def _kill_postmaster(pg: EmbeddedPostgres) -> None:
    """SIGKILL, as a crash: its backends notice and exit."""
    os.kill(int((pg.data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)


class Chaos:
    """The faults, against the service and its primary (`pg`) with a
    streaming standby; the service is started again by the faults that stop
    it, on the same ports, and `pg` is the standby once it is promoted."""

    def __init__(
        self, pg: EmbeddedPostgres, standby: EmbeddedPostgres, fixture: Fixture, folder: Path
    ) -> None:
        self.pg, self.standby, self.fixture, self.folder = pg, standby, fixture, folder
        self._stack = contextlib.ExitStack()
        self._starts = 0
        self.svc = self._start()
        self.soak_growth = (0, 0)  # MiB, calls: the soak's

    def _start(self, ports: tuple[int, int] | None = None) -> Service:
        self._starts += 1
        keyring = (self.folder / "keyring.json").read_text()
        return self._stack.enter_context(
            service(self.fixture, keyring, WORKERS, self.folder, name=f"service-{self._starts}", ports=ports)
        )

    def close(self) -> None:
        self._stack.close()

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.folder.glob("service-*.log")))

    async def _stop_and_start(self, *, database_out: bool) -> Fault:
        """SIGTERM to the service under load; when it has exited, started
        again on the same ports (after the database is back)."""
        if database_out:
            self.pg.stop(keep_address=True)
            await asyncio.sleep(1.0)
        old = self.svc
        asked = time.monotonic()
        old.proc.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(old.proc.wait, 30)
        took = time.monotonic() - asked
        if database_out:
            self.pg.start()
        self.svc = await asyncio.to_thread(self._start, (old.http, old.grpc))
        back = time.monotonic() - asked
        clean = (0, 3) if database_out else (0,)  # 3: it had to end calls held in the database
        return Fault(
            f"exit {status} {took:.1f} s after SIGTERM; serving again at {back:.1f} s", ok=status in clean
        )

    async def sigterm(self) -> Fault:
        return await self._stop_and_start(database_out=False)

    async def sigterm_during_an_outage(self) -> Fault:
        return await self._stop_and_start(database_out=True)

    async def synchronous_standby(self) -> None:
        await make_standby_synchronous(self.pg.dsn)

    async def failover(self) -> Fault:
        """The primary SIGKILLed, its synchronous standby promoted 1 s later."""
        _kill_postmaster(self.pg)
        await asyncio.sleep(1.0)
        await fetch_value(self.standby.dsn, "SELECT pg_promote()")
        await until_true(self.standby.dsn, "SELECT NOT pg_is_in_recovery()")
        self.pg = self.standby
        return Fault("primary killed, standby promoted after 1 s")

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

    async def soak(self) -> Fault:
        """Beside the load, every method over every wire: Create, Get,
        GetValue, List, Update, GetValue again, Delete, round and round;
        any failure or wrong answer fails the scenario."""
        wires = [Wire(self.svc, name, self.fixture.key) for name in ("grpc", "connect-proto", "connect-json")]
        before = _rss_mib(self.svc)
        calls, wrong = 0, collections.Counter[str]()
        until = time.monotonic() + SOAK_S

        async def round_trip(wire: Wire) -> None:
            nonlocal calls
            runner = str(uuid.uuid4())
            while time.monotonic() < until:
                try:
                    token_id = await wire.create(runner)
                    got = await wire.call(
                        "GetHostAuthenticationToken",
                        pb.GetHostAuthenticationTokenRequest(id=token_id),
                        pb.GetHostAuthenticationTokenResponse,
                    )
                    value = await wire.call(
                        "GetHostAuthenticationTokenValue",
                        pb.GetHostAuthenticationTokenValueRequest(id=token_id),
                        pb.GetHostAuthenticationTokenValueResponse,
                    )
                    listed = await wire.call(
                        "ListHostAuthenticationTokens",
                        pb.ListHostAuthenticationTokensRequest(
                            filter=pb.ListHostAuthenticationTokensRequest.Filter(runner_id=runner)
                        ),
                        pb.ListHostAuthenticationTokensResponse,
                    )
                    await wire.call(
                        "UpdateHostAuthenticationToken",
                        pb.UpdateHostAuthenticationTokenRequest(id=token_id, token="gho_chaos_2"),
                        pb.UpdateHostAuthenticationTokenResponse,
                    )
                    again = await wire.call(
                        "GetHostAuthenticationTokenValue",
                        pb.GetHostAuthenticationTokenValueRequest(id=token_id),
                        pb.GetHostAuthenticationTokenValueResponse,
                    )
                    await wire.call(
                        "DeleteHostAuthenticationToken",
                        pb.DeleteHostAuthenticationTokenRequest(id=token_id),
                        pb.DeleteHostAuthenticationTokenResponse,
                    )
                except Refused as exc:
                    wrong[exc.code] += 1
                    continue
                finally:
                    calls += 7
                if (got.token.id, value.token, again.token) != (token_id, "gho_chaos", "gho_chaos_2") or [
                    t.id for t in listed.tokens
                ] != [token_id]:
                    wrong["wrong answer"] += 1

        try:
            await asyncio.gather(*(round_trip(w) for w in wires for _ in range(2)))
        finally:
            for wire in wires:
                await wire.close()
        failed = ", ".join(f"{code} {n}" for code, n in sorted(wrong.items())) or "none failed"
        grown = _rss_mib(self.svc) - before
        self.soak_growth = grown, calls
        return Fault(
            f"{calls} mixed calls beside, {failed}; workers {grown:+d} MiB", ok=not wrong, calls=calls
        )


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


async def _run(chaos: Chaos, scenario: Scenario, key: str) -> tuple[list[str], bool, int]:
    """One scenario under load: its table row, whether it held, and the
    calls it made in all."""
    if scenario.prepare is not None:
        await scenario.prepare()
    wires = [Wire(chaos.svc, name, key) for name in ("grpc", "connect-proto", "connect-json")]
    before = _footprint(chaos.svc)
    outcome, stop = Outcome(), asyncio.Event()
    load = asyncio.create_task(_load(wires, stop, outcome))
    await asyncio.sleep(1.0)
    fault = await scenario.fault() or Fault()
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
    svc = chaos.svc  # a new one after the faults that stop it
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
        fault.note or "-",
    ]
    ok = lost_rows == 0 and lost_audit == 0 and internal == 0 and alive and first is not None and fault.ok
    return row, ok, outcome.calls + fault.calls


async def _main(chaos: Chaos, only: list[str] | None) -> bool:
    scenarios = [
        Scenario("fast restart", chaos.fast_restart),
        Scenario("immediate stop and start", chaos.immediate_restart),
        Scenario("lock past the timeout", chaos.lock_past_the_timeout),
        Scenario("SIGTERM", chaos.sigterm),
        Scenario("SIGTERM, database out", chaos.sigterm_during_an_outage),
        Scenario("SIGKILL a worker", chaos.sigkill_a_worker),
        Scenario("SIGKILL a worker, database out", chaos.sigkill_a_worker_during_an_outage),
        Scenario("failover to the standby", chaos.failover, prepare=chaos.synchronous_standby),
        Scenario("2,000 idle connections a port", chaos.idle_connections),
        Scenario("200 trickling connections a port", chaos.trickling_connections),
        Scenario("malformed and oversized requests", chaos.malformed_requests),
        Scenario(f"soak of mixed calls, {SOAK_S:g} s", chaos.soak),
    ]
    header = ["scenario", "calls", "acked", "lost rows/audit", "failed by code", "internal",
              "first success s", "workers MiB/files before", "after", "note"]  # fmt: skip
    rows, all_ok = [], True
    for scenario in scenarios:
        if only and scenario.name not in only:
            continue
        row, ok, calls = await _run(chaos, scenario, chaos.fixture.key)
        rows.append(row + ([] if ok else ["FAILED"]))
        all_ok &= ok
        print(f"{scenario.name}: {'ok' if ok else 'FAILED'}", flush=True)
        if scenario.fault == chaos.soak:
            grown, mixed = chaos.soak_growth
            print(
                f"soak: the workers grew {grown} MiB together over its {mixed} mixed calls and the"
                f" load's {calls - mixed} ({grown * 100_000 / max(calls, 1):.1f} MiB per 100,000 calls)"
            )
    print("\n| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return all_ok


def _multi_host(dsn: str, *servers: EmbeddedPostgres) -> str:
    """`dsn`'s database on the first of `servers` that takes writes."""
    name = urlsplit(dsn).path.lstrip("/")
    hosts = ",".join(parse_qs(urlsplit(s.dsn).query)["host"][0] for s in servers)
    ports = ",".join("5432" for _ in servers)
    return f"postgresql://postgres@/{name}?host={hosts}&port={ports}&target_session_attrs=read-write"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="only these scenarios (by name)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hostauth-chaos-"))
    folder.chmod(0o755)
    primary = EmbeddedPostgres(folder / "primary", fsync=True)  # an acknowledged commit survives a crash
    standby: EmbeddedPostgres | None = None
    os.environ["HOSTAUTH_DB_TIMEOUT_S"] = str(DB_TIMEOUT_S)
    chaos: Chaos | None = None
    try:
        fixture = asyncio.run(setup(primary.start()))
        standby = primary.standby(folder / "standby")  # asynchronous until the failover's turn
        standby.start()
        fixture.dsn = _multi_host(fixture.dsn, primary, standby)
        (folder / "keyring.json").write_text(generate_keyring_json("chaos-1"))
        chaos = Chaos(primary, standby, fixture, folder)
        ok = asyncio.run(_main(chaos, args.only))
        chaos.close()
        log = chaos.logs()
        print(f"\ntracebacks in the service's logs: {log.count('Traceback')}; lines: {log.count(chr(10))}")
    finally:
        if chaos is not None:
            chaos.close()
        for pg in (standby, primary):
            if pg is not None:
                pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
