"""In-process tests against a real PostgreSQL: the core, the store and every wire."""
