"""OAuth refresh done once per token: the guarded outbound request, the
providers' token endpoints, and the coordinator that lets one caller across
every worker and replica refresh while the others wait for its result."""
