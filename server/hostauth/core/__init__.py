"""The product: the six methods, their rules, and the domain model, free of any wire or cipher."""
