-- A token's version, its etag: bumped by every write a client makes
-- (Create over an existing token, Update), not by a key rewrap, which changes
-- no value a client sees. Update and Delete may be made conditional on it.
ALTER TABLE host_authentication_tokens ADD COLUMN version bigint NOT NULL DEFAULT 1;
