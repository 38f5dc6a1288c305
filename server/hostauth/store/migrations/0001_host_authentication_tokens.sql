-- Host authentication tokens. Metadata is plain; secrets are only ever stored
-- as envelope ciphertexts (server/crypto/envelope.py), bound to id and field.
CREATE TABLE host_authentication_tokens (
    id                        uuid        PRIMARY KEY,
    runner_id                 uuid        NOT NULL,
    -- NULL when the token has no subject id (the spec allows an empty one).
    subject_id                uuid,
    subject_principal         smallint    NOT NULL,
    host                      text        NOT NULL,
    source                    smallint    NOT NULL,
    expires_at                timestamptz,
    integration_id            uuid,
    scopes                    text[]      NOT NULL,
    token_ciphertext          bytea       NOT NULL,
    -- NULL when no refresh token was given.
    refresh_token_ciphertext  bytea,
    -- The key-encryption key each ciphertext's data key is wrapped under (also
    -- in the ciphertext's header): what key rotation and retirement look for.
    token_kek_id              text        NOT NULL,
    refresh_token_kek_id      text,
    -- Bumped by every write: lets key rewraps and updates detect a lost race.
    generation                bigint      NOT NULL DEFAULT 1,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT host_authentication_tokens_triple
        UNIQUE NULLS NOT DISTINCT (runner_id, subject_id, host)
);

-- List walks tokens in (created_at, id) order, with or without its filters.
CREATE INDEX host_authentication_tokens_order ON host_authentication_tokens (created_at, id);
CREATE INDEX host_authentication_tokens_runner ON host_authentication_tokens (runner_id, created_at, id);
CREATE INDEX host_authentication_tokens_subject ON host_authentication_tokens (subject_id, created_at, id);

CREATE INDEX host_authentication_tokens_token_kek ON host_authentication_tokens (token_kek_id);
CREATE INDEX host_authentication_tokens_refresh_kek ON host_authentication_tokens (refresh_token_kek_id);

-- Secrets of the service itself (not of tokens), made once per database and
-- shared by every replica: the key that authenticates List cursors.
CREATE TABLE service_secrets (
    name  text  PRIMARY KEY,
    value bytea NOT NULL
);
