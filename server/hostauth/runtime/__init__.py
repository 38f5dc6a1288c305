"""How the service runs: serving, workers, the database it uses, process tuning."""
