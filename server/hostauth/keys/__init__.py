"""Key-encryption keys: which are loaded, and their registry in the database (rotation included)."""
