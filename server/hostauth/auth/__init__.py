"""Who is calling: credentials (API keys, JWTs) checked into a `Caller`."""
