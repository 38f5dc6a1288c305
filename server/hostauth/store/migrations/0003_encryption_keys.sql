-- Key-encryption keys known to the database: ids, states and check values
-- only, never key material. Exactly one key is primary (encrypts new data);
-- active keys decrypt; retired keys are no longer used by any row.
CREATE TABLE encryption_keys (
    id           text        PRIMARY KEY,
    state        text        NOT NULL CHECK (state IN ('primary', 'active', 'retired')),
    -- A fixed value wrapped under the key: proves a configured key is this one.
    check_value  bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX encryption_keys_one_primary ON encryption_keys ((true)) WHERE state = 'primary';

-- Running servers and the keys they hold, kept fresh by a heartbeat: a key
-- becomes primary only when every live replica holds it.
CREATE TABLE replicas (
    id              uuid        PRIMARY KEY,
    key_ids         text[]      NOT NULL,
    primary_key_id  text        NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now()
);
