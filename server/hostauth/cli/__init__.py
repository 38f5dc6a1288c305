"""The `hostauth` command: serve, API keys, keys, the audit trail."""
