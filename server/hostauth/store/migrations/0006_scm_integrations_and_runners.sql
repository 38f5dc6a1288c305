-- SCM integrations: a runner's OAuth app (or PAT setting) for one git host.
-- The client secret is stored only as an envelope ciphertext, bound to the
-- integration's id and field like a token's secrets.
CREATE TABLE scm_integrations (
    id                       uuid        PRIMARY KEY,
    runner_id                uuid        NOT NULL,
    scm_id                   text        NOT NULL,
    host                     text        NOT NULL,
    oauth_client_id          text,
    -- NULL exactly when oauth_client_id is NULL.
    client_secret_ciphertext bytea,
    client_secret_kek_id     text,
    issuer_url               text,
    pat                      boolean     NOT NULL DEFAULT false,
    virtual_directory        text,
    generation               bigint      NOT NULL DEFAULT 1,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- One integration per runner and host; host names are case-insensitive.
CREATE UNIQUE INDEX scm_integrations_runner_host ON scm_integrations (runner_id, lower(host));

CREATE INDEX scm_integrations_order ON scm_integrations (created_at, id);
CREATE INDEX scm_integrations_runner ON scm_integrations (runner_id, created_at, id);
CREATE INDEX scm_integrations_kek ON scm_integrations (client_secret_kek_id);

-- A token issued through an integration goes with it. NOT VALID: tokens
-- written before integrations existed may name one that never did; every
-- new or rewritten row is checked.
CREATE INDEX host_authentication_tokens_integration
    ON host_authentication_tokens (integration_id) WHERE integration_id IS NOT NULL;
ALTER TABLE host_authentication_tokens
    ADD CONSTRAINT host_authentication_tokens_integration_fk
    FOREIGN KEY (integration_id) REFERENCES scm_integrations (id) ON DELETE CASCADE NOT VALID;

-- Runners that signed up: the raw X25519 public key secrets are sealed to.
CREATE TABLE runners (
    id           uuid        PRIMARY KEY,
    public_key   bytea       NOT NULL,
    signed_up_at timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Audit rows of integration methods name the integration.
ALTER TABLE audit_events ADD COLUMN integration_id uuid;
-- The rows written before the trail was partitioned wait to be attached as
-- a partition, which needs the same columns.
DO $$
BEGIN
    IF to_regclass('audit_events_unpartitioned') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = 'audit_events_unpartitioned'::regclass) THEN
        ALTER TABLE audit_events_unpartitioned ADD COLUMN integration_id uuid;
    END IF;
END $$;
