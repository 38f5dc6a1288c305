"""Tests of whole processes: the command, workers, signals, the embedded PostgreSQL, the bench."""
