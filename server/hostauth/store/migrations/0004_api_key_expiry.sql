-- API keys that age: an optional expiry (past it, the key authenticates no
-- more) and when it was last used (kept to the minute). Columns added only:
-- the previous release runs on unchanged.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
