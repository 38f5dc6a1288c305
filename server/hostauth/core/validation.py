"""The contract's validation rules, in one place.

The spec's rules (../shared/spec/host-authentication-tokens.md) are checked
here rather than as protovalidate annotations: see README "Validation".
Every rule is checked and every violation is reported, named by its proto
field path, with protovalidate's wording.

Beyond the spec, two limits keep bad input from becoming an internal error
in PostgreSQL: text that is stored plain (host, scopes) may not contain NUL
characters, and host is at most 512 characters (it is part of a unique index).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from gitpod.v1 import identity_pb2
from gitpod.v1 import runner_configuration_pb2 as pb
from gitpod.v1 import runner_interaction_pb2 as ri
from hostauth.errors import FieldViolation

# Used with fullmatch: `$` would also match before a trailing newline, which
# uuid.UUID then refuses with an exception (an internal error, not a 400).
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MAX_CREATE_SCOPES = 101  # "Maximum 100 scopes allowed (101 for validation purposes)"
MAX_HOST_CHARS = 512
MAX_FILTER_RUNNERS = 25
MAX_TEXT_CHARS = 2048  # client ids, issuer URLs, directories: plain text in a row
MAX_CLIENT_SECRET_CHARS = 8192
# The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799

REQUIRED = "value is required"
NOT_UUID = "value must be a valid UUID"
EMPTY = "value length must be at least 1 characters"
NOT_DEFINED = "value must be one of the defined enum values"
BAD_TIMESTAMP = "value must be a valid timestamp"
HAS_NUL = "value must not contain NUL characters"


class Violations:
    """Collects violations of one request."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def uuid(self, field: str, value: str, *, required: bool) -> None:
        if not value:
            if required:
                self.add(field, REQUIRED)
        elif not UUID_PATTERN.fullmatch(value):
            self.add(field, NOT_UUID)

    def text(self, field: str, value: str, *, max_chars: int | None = None) -> None:
        if not value:
            self.add(field, EMPTY)
            return
        if max_chars is not None and len(value) > max_chars:
            self.add(field, f"value length must be at most {max_chars} characters")
        if "\x00" in value:
            self.add(field, HAS_NUL)

    def enum(self, field: str, value: int, descriptor: EnumDescriptor) -> None:
        if value not in descriptor.values_by_number:
            self.add(field, NOT_DEFINED)

    def timestamp(self, field: str, value: Timestamp) -> None:
        if not (_MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos <= 999_999_999):
            self.add(field, BAD_TIMESTAMP)

    def page_size(self, size: int) -> None:
        if not 0 <= size <= 100:
            self.add(
                "pagination.page_size",
                "value must be greater than or equal to 0 and less than or equal to 100",
            )

    def scopes(self, field: str, values: Iterable[str], *, max_items: int | None) -> None:
        values = list(values)
        if max_items is not None and len(values) > max_items:
            self.add(field, f"value must contain no more than {max_items} item(s)")
        for index, scope in enumerate(values):
            if "\x00" in scope:
                self.add(f"{field}[{index}]", HAS_NUL)


def create_violations(req: pb.CreateHostAuthenticationTokenRequest) -> list[FieldViolation]:
    v = Violations()
    v.uuid("runner_id", req.runner_id, required=True)
    v.uuid("user_id", req.user_id, required=False)
    v.text("host", req.host, max_chars=MAX_HOST_CHARS)
    if not req.token:
        v.add("token", EMPTY)
    v.enum("source", req.source, pb.HostAuthenticationTokenSource.DESCRIPTOR)
    if req.HasField("expires_at"):
        v.timestamp("expires_at", req.expires_at)
    v.uuid("integration_id", req.integration_id, required=False)
    v.scopes("scopes", req.scopes, max_items=MAX_CREATE_SCOPES)
    if req.HasField("subject"):
        v.uuid("subject.id", req.subject.id, required=False)
        v.enum("subject.principal", req.subject.principal, identity_pb2.Principal.DESCRIPTOR)
    return v.items


def id_violations(token_id: str) -> list[FieldViolation]:
    """Requests that only name a token by id (Get, Delete, GetValue)."""
    v = Violations()
    v.uuid("id", token_id, required=True)
    return v.items


def list_violations(req: pb.ListHostAuthenticationTokensRequest) -> list[FieldViolation]:
    v = Violations()
    v.page_size(req.pagination.page_size)
    for name in ("runner_id", "user_id", "subject_id"):
        if req.filter.HasField(name) and not UUID_PATTERN.fullmatch(getattr(req.filter, name)):
            v.add(f"filter.{name}", NOT_UUID)
    return v.items


def update_violations(req: pb.UpdateHostAuthenticationTokenRequest) -> list[FieldViolation]:
    v = Violations()
    v.uuid("id", req.id, required=True)
    if req.HasField("token") and not req.token:
        v.add("token", EMPTY)
    if req.HasField("expires_at"):
        v.timestamp("expires_at", req.expires_at)
    v.scopes("scopes", req.scopes, max_items=None)
    return v.items


def _optional_text(v: Violations, field: str, value: str, max_chars: int) -> None:
    if len(value) > max_chars:
        v.add(field, f"value length must be at most {max_chars} characters")
    if "\x00" in value:
        v.add(field, HAS_NUL)


def _issuer_url(v: Violations, field: str, value: str) -> None:
    _optional_text(v, field, value, MAX_TEXT_CHARS)
    scheme, sep, rest = value.partition("://")
    if not (sep and scheme.lower() in ("http", "https") and rest and not rest.startswith("/")):
        v.add(field, "value must be an absolute http or https URL")


def create_integration_violations(req: pb.CreateSCMIntegrationRequest) -> list[FieldViolation]:
    v = Violations()
    v.uuid("runner_id", req.runner_id, required=True)
    v.text("scm_id", req.scm_id, max_chars=MAX_TEXT_CHARS)
    v.text("host", req.host, max_chars=MAX_HOST_CHARS)
    has_id = req.HasField("oauth_client_id") and req.oauth_client_id != ""
    has_secret = req.HasField("oauth_plaintext_client_secret") and req.oauth_plaintext_client_secret != ""
    if has_id and not has_secret:
        v.add("oauth_plaintext_client_secret", "value is required when oauth_client_id is set")
    if has_secret and not has_id:
        v.add("oauth_client_id", "value is required when oauth_plaintext_client_secret is set")
    if has_id:
        _optional_text(v, "oauth_client_id", req.oauth_client_id, MAX_TEXT_CHARS)
    if has_secret and len(req.oauth_plaintext_client_secret) > MAX_CLIENT_SECRET_CHARS:
        v.add(
            "oauth_plaintext_client_secret",
            f"value length must be at most {MAX_CLIENT_SECRET_CHARS} characters",
        )
    if req.HasField("issuer_url") and req.issuer_url:
        _issuer_url(v, "issuer_url", req.issuer_url)
    if req.HasField("virtual_directory"):
        _optional_text(v, "virtual_directory", req.virtual_directory, MAX_TEXT_CHARS)
    return v.items


def list_integrations_violations(req: pb.ListSCMIntegrationsRequest) -> list[FieldViolation]:
    v = Violations()
    v.page_size(req.pagination.page_size)
    runner_ids = req.filter.runner_ids
    if len(runner_ids) > MAX_FILTER_RUNNERS:
        v.add("filter.runner_ids", f"value must contain no more than {MAX_FILTER_RUNNERS} item(s)")
    for index, runner_id in enumerate(runner_ids):
        if not UUID_PATTERN.fullmatch(runner_id):
            v.add(f"filter.runner_ids[{index}]", NOT_UUID)
    return v.items


def update_integration_violations(req: pb.UpdateSCMIntegrationRequest) -> list[FieldViolation]:
    """The rules that need no stored state; the OAuth app's (a secret alone
    needs a client id stored) are the service's."""
    v = Violations()
    v.uuid("id", req.id, required=True)
    if req.HasField("oauth_client_id"):
        if req.oauth_client_id:
            _optional_text(v, "oauth_client_id", req.oauth_client_id, MAX_TEXT_CHARS)
            if not req.oauth_plaintext_client_secret:
                v.add("oauth_plaintext_client_secret", "value is required when oauth_client_id is set")
        elif req.oauth_plaintext_client_secret:
            v.add("oauth_client_id", "value is required when oauth_plaintext_client_secret is set")
    elif req.HasField("oauth_plaintext_client_secret") and not req.oauth_plaintext_client_secret:
        v.add("oauth_plaintext_client_secret", EMPTY)
    if len(req.oauth_plaintext_client_secret) > MAX_CLIENT_SECRET_CHARS:
        v.add(
            "oauth_plaintext_client_secret",
            f"value length must be at most {MAX_CLIENT_SECRET_CHARS} characters",
        )
    if req.HasField("issuer_url") and req.issuer_url:
        _issuer_url(v, "issuer_url", req.issuer_url)
    if req.HasField("virtual_directory"):
        _optional_text(v, "virtual_directory", req.virtual_directory, MAX_TEXT_CHARS)
    return v.items


def sealed_read_violations(
    req: ri.RunnerInteractionServiceGetHostAuthenticationTokenValueRequest,
) -> list[FieldViolation]:
    v = Violations()
    v.uuid("runner_id", req.runner_id, required=True)
    v.uuid("principal_id", req.principal_id, required=True)
    v.text("host", req.host, max_chars=MAX_HOST_CHARS)
    return v.items
