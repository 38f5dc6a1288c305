-- API keys: only a SHA-256 of each key is stored (keys are 256-bit random,
-- so a fast hash is enough: there is nothing to brute-force).
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    key_hash     bytea       NOT NULL UNIQUE,
    principal    smallint    NOT NULL,
    subject_id   uuid        NOT NULL,
    grants       text[]      NOT NULL DEFAULT '{}',
    description  text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Who did what to which token, and how it ended. Never a secret or a
-- credential: credential_id names the API key or JWT, it is not the key.
CREATE TABLE audit_events (
    id             bigserial   PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    request_id     text        NOT NULL,
    method         text        NOT NULL,
    token_id       uuid,
    principal      smallint    NOT NULL,
    subject_id     uuid        NOT NULL,
    credential_id  text        NOT NULL,
    outcome        text        NOT NULL
);

CREATE INDEX audit_events_token ON audit_events (token_id, at);
CREATE INDEX audit_events_subject ON audit_events (subject_id, at);
CREATE INDEX audit_events_at ON audit_events (at);
