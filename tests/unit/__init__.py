"""The fast tier: no PostgreSQL, no process; run first."""
