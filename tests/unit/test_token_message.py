"""A stored token's metadata as the API returns it (hostauth.core.service.to_message),
over random records: every field mapped, the subject present only when known."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from gitpod.v1 import identity_pb2
from hostauth.core.model import TokenRecord
from hostauth.core.service import to_message


def random_record(rng: random.Random) -> TokenRecord:
    return TokenRecord(
        uuid4(),
        uuid4(),
        rng.choice([None, uuid4()]),
        rng.choice([0, 1, 2, 3]),
        rng.choice(["", "github.com"]),
        rng.choice([0, 1, 2, 3]),
        rng.choice(
            [
                None,
                datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8), microseconds=7),
            ]
        ),
        rng.choice([None, uuid4()]),
        tuple(rng.sample(["repo", "read:user", "workflow"], rng.randint(0, 3))),
    )


def test_every_field_is_mapped() -> None:
    rng = random.Random(6)
    for _ in range(2000):
        record = random_record(rng)
        msg = to_message(record)
        assert msg.id == str(record.id)
        assert msg.runner_id == str(record.runner_id)
        assert msg.host == record.host
        assert msg.source == record.source
        assert msg.integration_id == (str(record.integration_id) if record.integration_id else "")
        assert tuple(msg.scopes) == record.scopes
        subject = str(record.subject_id) if record.subject_id else ""
        assert msg.HasField("subject") == bool(subject or record.subject_principal)
        assert (msg.subject.id, msg.subject.principal) == (subject, record.subject_principal)
        user = record.subject_principal == identity_pb2.PRINCIPAL_USER
        assert msg.user_id == (subject if user else "")
        assert msg.HasField("expires_at") == (record.expires_at is not None)
        if record.expires_at is not None:
            assert msg.expires_at.ToDatetime(tzinfo=UTC) == record.expires_at
