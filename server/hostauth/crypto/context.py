"""Where a secret lives, the context every layer of its encryption is bound to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SecretContext:
    """Where a secret lives: the token's id and the field name."""

    token_id: str
    field: str

    def associated_data(self) -> bytes:
        return f"hostauth/v1/{self.token_id}/{self.field}".encode()

    def as_dict(self) -> dict[str, str]:
        """For key services that take a context as key-value pairs (KMS)."""
        return {"hostauth:token_id": self.token_id, "hostauth:field": self.field}
