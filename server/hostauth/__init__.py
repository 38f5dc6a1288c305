"""hostauth: keeps the credentials developer environments use to reach git hosts."""
