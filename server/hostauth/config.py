"""Configuration: one typed object, read once at start-up from the environment.

Nothing else in the service reads the environment, and this module imports
nothing of the service's: every default is set here, once, and passed down.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# API keys are this prefix and 43 characters of base64url (hostauth/auth/api_keys.py).
API_KEY_PREFIX = "hak_"

# Connecting to the database, and any one statement, fail after this long.
DEFAULT_DB_TIMEOUT_S = 10.0

EVENT_LOOPS = ("uvloop", "asyncio")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("INFO", "DEBUG", "WARNING", "ERROR")


class ConfigError(Exception):
    """A setting is missing or malformed."""


ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


@dataclass(frozen=True, slots=True)
class JwtSettings:
    issuer: str
    audience: str
    jwks_file: Path | None = None
    pem_files: tuple[Path, ...] = ()
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    leeway_s: int = 30
    principal_claim: str = "principal"

    def __post_init__(self) -> None:
        unsafe = set(self.algorithms) - ASYMMETRIC
        if unsafe:
            raise ValueError(f"JWT algorithms must be asymmetric; not allowed: {sorted(unsafe)}")
        if self.jwks_file is None and not self.pem_files and not self.jwks_url:
            raise ValueError("JWT verification needs a JWKS file, a JWKS URL or PEM public keys")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError(
                f"HOSTAUTH_JWT_JWKS_URL must be an https:// (or http://) URL, got {self.jwks_url!r}"
            )


CLIENT_CERT_MODES = ("off", "optional", "require")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS on both ports: the server's certificate and key (reread when they
    change on disk), and client certificates (mutual TLS) checked against
    `client_ca_file` when `client_certs` is optional or require, their
    identities mapped to principals by `client_identities_file`."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_certs: str = "off"
    client_identities_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, setting: str) -> Address:
        """`host:port`, `[v6]:port`, or `:port` for every IPv4 address."""
        host, sep, port = text.strip().rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        host = host[1:-1] if bracketed else host
        if not sep or not port.isdigit() or int(port) > 65535 or (":" in host and not bracketed):
            raise ConfigError(f"{setting} must be host:port, [IPv6]:port or :port, got {text!r}")
        return cls(host or "0.0.0.0", int(port))  # noqa: S104 # ":8080" means every address

    @property
    def loopback(self) -> bool:
        """Reachable from this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve anywhere
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Settings:
    http_addr: Address = Address("127.0.0.1", 8080)
    grpc_addr: Address = Address("127.0.0.1", 9090)
    # None: no external database; only allowed in development mode, where an
    # embedded PostgreSQL is started in data_dir.
    database_url: str | None = dataclasses.field(default=None, repr=False)
    data_dir: Path = Path(".hostauth")
    keyring_json: str | None = dataclasses.field(default=None, repr=False)
    keyring_file: Path | None = None
    dev: bool = False
    # None: JWTs are not accepted (API keys only).
    jwt: JwtSettings | None = None
    # --dev: use this API key as the development key instead of generating one.
    dev_api_key: str | None = dataclasses.field(default=None, repr=False)
    # AWS KMS key (id or ARN) to seal new data under; None: local keys only.
    kms_key_id: str | None = None
    kms_endpoint_url: str | None = None
    kms_cache_size: int = 10_000
    kms_cache_ttl_s: float = 300.0
    # How often a replica tells the database which keys it holds; it counts
    # as live for three intervals.
    heartbeat_s: float = 2.0
    # Serving processes; several share the ports (SO_REUSEPORT). 0 (unset):
    # as many as the CPU quota allows (runtime/cpus.py, resolved by `serve`).
    workers: int = 1
    # Pin worker i to the i-th CPU this process may use (wrapping around), so
    # the workers do not migrate between cores and evict each other's caches.
    pin_workers: bool = True
    # When pinned to one core, the event loop and the HTTP server's threads
    # under SCHED_BATCH: no wakeup preemption between them (server/hostauth/runtime/tuning.py).
    batch_scheduling: bool = True
    # Database connections per serving process.
    db_pool_size: int = 10
    # The connections this replica may hold (workers x pool size must fit);
    # None: the server's max_connections less its reserved ones.
    db_max_connections: int | None = None
    # Connecting, and any one statement, fail after this long (unavailable).
    db_timeout_s: float = DEFAULT_DB_TIMEOUT_S
    # Requests above this size are refused with resource_exhausted.
    max_message_bytes: int = 1 << 20
    # uvloop, or the standard library's loop (asyncio).
    event_loop: str = "uvloop"
    # A connection that has not sent a request's headers (HTTP/1.1) or
    # finished its handshake (gRPC) within this is closed.
    header_timeout_s: float = 10.0
    # A request body not in within this is answered deadline_exceeded.
    body_timeout_s: float = 10.0
    # Connections one worker serves at once, on each port.
    max_connections: int = 4096
    # HTTP/2 without TLS on the HTTP port (h2c), besides HTTP/1.1.
    http_h2c: bool = False
    # None: plaintext on both ports (loopback only, unless allow_plaintext).
    tls: TlsSettings | None = None
    # Plaintext on an address other than loopback (a mesh encrypts instead).
    allow_plaintext: bool = False
    # After SIGTERM, readiness and gRPC health say not serving while calls are
    # still served for this long, so load balancers stop sending first.
    drain_delay_s: float = 0.0
    # Browser origins allowed to call the Connect port (CORS); none: no CORS.
    cors_origins: tuple[str, ...] = ()
    # Where /metrics is served (Prometheus text format) for the whole service;
    # None: no metrics, and none recorded.
    metrics_addr: Address | None = Address("127.0.0.1", 9464)
    # Log lines as text or as one JSON object a line; the least level logged.
    log_format: str = "text"
    log_level: str = "INFO"
    # One log line per call (hostauth.access).
    access_log: bool = False
    # RunnerConfigurationService/GetHostAuthenticationTokenValue (secrets in
    # clear, for service accounts with secrets:read); off: secrets leave only
    # sealed to a runner's key.
    plaintext_reads: bool = True
    # OAuth refresh: a secret read this close to expires_at refreshes first.
    refresh_window_s: float = 300.0
    # Worker 0 refreshes tokens nearing expiry before anyone reads them.
    refresh_ahead: bool = False
    # Networks a token endpoint may resolve into although loopback, private,
    # link-local or reserved (CIDRs); the provider client's CA file (None:
    # the system's) and its timeout.
    oauth_allowed_networks: str = ""
    oauth_ca_file: str | None = None
    oauth_timeout_s: float = 5.0
    # Every audit event also as a JSON line: "stdout" or "file:<path>"; None: none.
    audit_sink: str | None = None
    # `audit prune` keeps at least this many days of the audit trail.
    audit_retention_days: int = 30
    # OpenTelemetry traces, configured by the standard OTEL_* variables: on
    # when an OTLP endpoint or a traces exporter is named there.
    tracing: bool = False
    # This worker's place among the supervisor's (0 when serving alone): worker
    # 0 computes the gauges read from the database.
    worker_index: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dev: bool = False, database: bool = True) -> Settings:
        """The settings in env; `database=False` for a command that needs none."""
        event_loop = env.get("HOSTAUTH_EVENT_LOOP", "uvloop")
        if event_loop not in EVENT_LOOPS:
            raise ConfigError(f"HOSTAUTH_EVENT_LOOP must be uvloop or asyncio, got {event_loop!r}")
        settings = cls(
            http_addr=Address.parse(
                env.get("HOSTAUTH_HTTP_ADDR", "127.0.0.1:8080"), setting="HOSTAUTH_HTTP_ADDR"
            ),
            grpc_addr=Address.parse(
                env.get("HOSTAUTH_GRPC_ADDR", "127.0.0.1:9090"), setting="HOSTAUTH_GRPC_ADDR"
            ),
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("HOSTAUTH_DATA_DIR", ".hostauth")),
            keyring_json=env.get("HOSTAUTH_KEYRING") or None,
            keyring_file=Path(env["HOSTAUTH_KEYRING_FILE"]) if env.get("HOSTAUTH_KEYRING_FILE") else None,
            dev=dev,
            jwt=_jwt_settings(env),
            dev_api_key=_dev_api_key(env),
            heartbeat_s=_seconds(env, "HOSTAUTH_HEARTBEAT_S", 2.0),
            kms_key_id=env.get("HOSTAUTH_KMS_KEY_ID") or None,
            kms_endpoint_url=env.get("HOSTAUTH_KMS_ENDPOINT_URL") or None,
            kms_cache_size=_count(env, "HOSTAUTH_KMS_CACHE_SIZE", 10_000),
            kms_cache_ttl_s=_seconds(env, "HOSTAUTH_KMS_CACHE_TTL_S", 300.0),
            workers=_count(env, "HOSTAUTH_WORKERS", 0),
            pin_workers=_switch(env, "HOSTAUTH_PIN_WORKERS", default=True),
            batch_scheduling=_switch(env, "HOSTAUTH_BATCH_SCHEDULING", default=True),
            db_pool_size=_count(env, "HOSTAUTH_DB_POOL_SIZE", 10),
            db_max_connections=_count(env, "HOSTAUTH_DB_MAX_CONNECTIONS", 0) or None,
            db_timeout_s=_seconds(env, "HOSTAUTH_DB_TIMEOUT_S", DEFAULT_DB_TIMEOUT_S),
            header_timeout_s=_seconds(env, "HOSTAUTH_HEADER_TIMEOUT_S", 10.0),
            body_timeout_s=_seconds(env, "HOSTAUTH_BODY_TIMEOUT_S", 10.0),
            max_connections=_count(env, "HOSTAUTH_MAX_CONNECTIONS", 4096),
            http_h2c=_switch(env, "HOSTAUTH_HTTP_H2C", default=False),
            event_loop=event_loop,
            tls=_tls_settings(env),
            allow_plaintext=_switch(env, "HOSTAUTH_ALLOW_PLAINTEXT", default=False),
            cors_origins=_origins(env),
            drain_delay_s=_seconds(env, "HOSTAUTH_DRAIN_DELAY_S", 0.0, zero=True),
            metrics_addr=_optional_address(env, "HOSTAUTH_METRICS_ADDR", "127.0.0.1:9464"),
            log_format=_choice(env, "HOSTAUTH_LOG_FORMAT", LOG_FORMATS),
            log_level=_choice(env, "HOSTAUTH_LOG_LEVEL", LOG_LEVELS, upper=True),
            access_log=_switch(env, "HOSTAUTH_ACCESS_LOG", default=False),
            plaintext_reads=_switch(env, "HOSTAUTH_PLAINTEXT_READS", default=True),
            refresh_window_s=_seconds(env, "HOSTAUTH_REFRESH_WINDOW_S", 300.0, zero=True),
            refresh_ahead=_switch(env, "HOSTAUTH_REFRESH_AHEAD", default=False),
            oauth_allowed_networks=_networks(env),
            oauth_ca_file=env.get("HOSTAUTH_OAUTH_CA_FILE") or None,
            oauth_timeout_s=_seconds(env, "HOSTAUTH_OAUTH_TIMEOUT_S", 5.0),
            audit_sink=_audit_sink(env),
            audit_retention_days=_count(env, "HOSTAUTH_AUDIT_RETENTION_DAYS", 30),
            tracing=tracing_configured(env),
            worker_index=int(env.get("HOSTAUTH_WORKER_INDEX", "0") or 0),
        )
        if settings.database_url is None and not dev and database:
            raise ConfigError("DATABASE_URL is required (or start with --dev for an embedded database)")
        return settings

    def plaintext_exposure(self) -> str | None:
        """Why serving as configured would send secrets in clear text over a
        network, or None: plaintext off loopback without allow_plaintext."""
        if self.tls is not None or self.allow_plaintext:
            return None
        for name, addr in (("HOSTAUTH_HTTP_ADDR", self.http_addr), ("HOSTAUTH_GRPC_ADDR", self.grpc_addr)):
            if not addr.loopback:
                return (
                    f"{name} is {addr}, reachable beyond this machine, and TLS is off: set"
                    " HOSTAUTH_TLS_CERT_FILE and HOSTAUTH_TLS_KEY_FILE, or HOSTAUTH_ALLOW_PLAINTEXT=true"
                    " where something else encrypts the traffic (a service mesh)"
                )
        return None

    def plaintext_off_loopback(self) -> bool:
        """Plaintext allowed on an address other than loopback (warned at start)."""
        return self.tls is None and not (self.http_addr.loopback and self.grpc_addr.loopback)


def _tls_settings(env: Mapping[str, str]) -> TlsSettings | None:
    cert, key = env.get("HOSTAUTH_TLS_CERT_FILE", ""), env.get("HOSTAUTH_TLS_KEY_FILE", "")
    ca = env.get("HOSTAUTH_TLS_CLIENT_CA_FILE", "")
    mode = env.get("HOSTAUTH_TLS_CLIENT_CERTS", "").strip().lower() or ("require" if ca else "off")
    identities = env.get("HOSTAUTH_TLS_CLIENT_IDENTITIES_FILE", "")
    if not cert and not key:
        if ca or identities or mode != "off":
            raise ConfigError(
                "client certificates need TLS: set HOSTAUTH_TLS_CERT_FILE and HOSTAUTH_TLS_KEY_FILE"
            )
        return None
    if not cert or not key:
        raise ConfigError("TLS needs both HOSTAUTH_TLS_CERT_FILE and HOSTAUTH_TLS_KEY_FILE")
    if mode not in CLIENT_CERT_MODES:
        raise ConfigError(f"HOSTAUTH_TLS_CLIENT_CERTS must be off, optional or require, got {mode!r}")
    if mode != "off" and not (ca and identities):
        raise ConfigError(
            "client certificates need HOSTAUTH_TLS_CLIENT_CA_FILE (who may issue them) and"
            " HOSTAUTH_TLS_CLIENT_IDENTITIES_FILE (whom they stand for)"
        )
    return TlsSettings(
        cert_file=Path(cert),
        key_file=Path(key),
        client_ca_file=Path(ca) if ca else None,
        client_certs=mode,
        client_identities_file=Path(identities) if identities else None,
    )


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in env.get("HOSTAUTH_CORS_ORIGINS", "").split(",") if o.strip())
    for origin in origins:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(
                f"HOSTAUTH_CORS_ORIGINS takes exact origins (scheme://host[:port], no path), got {origin!r}"
            )
    return origins


def _switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise ConfigError(f"{name} must be on or off (1/0, true/false), got {value!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    """The setting, one of `choices`; the first when unset."""
    value = env.get(name, "").strip()
    value = value.upper() if upper else value.lower()
    if not value:
        return choices[0]
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _optional_address(env: Mapping[str, str], name: str, default: str) -> Address | None:
    """An address, or None when the setting is set and empty (off)."""
    text = env.get(name, default).strip()
    return Address.parse(text, setting=name) if text else None


def _audit_sink(env: Mapping[str, str]) -> str | None:
    text = env.get("HOSTAUTH_AUDIT_SINK", "").strip()
    if not text:
        return None
    if text == "stdout" or (text.startswith("file:") and len(text) > len("file:")):
        return text
    raise ConfigError(f"HOSTAUTH_AUDIT_SINK must be stdout or file:<path>, got {text!r}")


def tracing_configured(env: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces: an OTLP endpoint, or a
    traces exporter other than none, and the SDK not disabled."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdecimal() or int(text) == 0:
        raise ConfigError(f"{name} must be a whole number above 0, got {text!r}")
    return int(text)


# A key of one's own must be one the Authenticator takes for an API key.
_DEV_API_KEY = re.compile(re.escape(API_KEY_PREFIX) + r"[A-Za-z0-9_-]{16,}")


def _dev_api_key(env: Mapping[str, str]) -> str | None:
    key = env.get("HOSTAUTH_DEV_API_KEY") or None
    if key is not None and not _DEV_API_KEY.fullmatch(key):
        raise ConfigError(
            f"HOSTAUTH_DEV_API_KEY must be {API_KEY_PREFIX} and at least 16 characters of A-Z, a-z, 0-9,"
            " _ or - (as `api-keys create` makes them)"
        )
    return key


def _jwt_settings(env: Mapping[str, str]) -> JwtSettings | None:
    names = (
        "HOSTAUTH_JWT_ISSUER",
        "HOSTAUTH_JWT_AUDIENCE",
        "HOSTAUTH_JWT_JWKS_FILE",
        "HOSTAUTH_JWT_JWKS_URL",
        "HOSTAUTH_JWT_PEM_FILES",
    )
    if not any(env.get(n) for n in names):
        return None
    issuer, audience = env.get("HOSTAUTH_JWT_ISSUER", ""), env.get("HOSTAUTH_JWT_AUDIENCE", "")
    if not issuer or not audience:
        raise ConfigError("JWTs need both HOSTAUTH_JWT_ISSUER and HOSTAUTH_JWT_AUDIENCE")
    leeway = env.get("HOSTAUTH_JWT_LEEWAY_S", "30")
    if not leeway.isdigit():
        raise ConfigError(f"HOSTAUTH_JWT_LEEWAY_S must be a number of seconds, got {leeway!r}")
    try:
        return JwtSettings(
            issuer=issuer,
            audience=audience,
            jwks_file=Path(env["HOSTAUTH_JWT_JWKS_FILE"]) if env.get("HOSTAUTH_JWT_JWKS_FILE") else None,
            pem_files=tuple(Path(p) for p in env.get("HOSTAUTH_JWT_PEM_FILES", "").split(",") if p),
            jwks_url=env.get("HOSTAUTH_JWT_JWKS_URL") or None,
            algorithms=tuple(
                a.strip() for a in env.get("HOSTAUTH_JWT_ALGORITHMS", "RS256,ES256,EdDSA").split(",")
            ),
            leeway_s=int(leeway),
            principal_claim=env.get("HOSTAUTH_JWT_PRINCIPAL_CLAIM", "principal"),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _networks(env: Mapping[str, str]) -> str:
    text = env.get("HOSTAUTH_OAUTH_ALLOWED_NETWORKS", "")
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ConfigError(
                f"HOSTAUTH_OAUTH_ALLOWED_NETWORKS must be CIDRs separated by commas, got {part!r}"
            ) from None
    return text


def _seconds(env: Mapping[str, str], name: str, default: float, *, zero: bool = False) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}") from None
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{name} must be {'0 or more' if zero else 'positive'}, got {text!r}")
    return value
