"""Wire adapters: decode, call the core once, map errors. Nothing else."""
