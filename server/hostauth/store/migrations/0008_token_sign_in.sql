-- A token whose refresh token the provider refused (spent or revoked): its
-- secrets are not handed out until a Create or an Update of its secrets
-- replaces them, and why is kept for the operator (never a secret).
ALTER TABLE host_authentication_tokens
    ADD COLUMN needs_sign_in boolean NOT NULL DEFAULT false,
    ADD COLUMN refresh_failure text;
