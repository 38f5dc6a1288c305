"""The open-file limit the configured connections need, raised at start.

Each connection is a file descriptor; a worker that runs out of them stops
accepting on both ports (gRPC's health check included). A common default
soft limit (1,024) is far below what HOSTAUTH_MAX_CONNECTIONS allows, while
the hard limit usually is not: the soft one is raised to what is needed.
"""

from __future__ import annotations

import resource

from hostauth.config import ConfigError, Settings

# Beyond the connections: the database pool, logs, the runtime's own.
_RESERVE = 256


def needed(settings: Settings) -> int:
    """Per serving process: both ports' connections, the pool and a reserve."""
    return 2 * settings.max_connections + settings.db_pool_size + _RESERVE


def raise_open_file_limit(settings: Settings) -> int:
    """Raise the soft limit to what the settings need; the new soft limit.
    ConfigError when the hard limit is lower."""
    want = needed(settings)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    if hard != resource.RLIM_INFINITY and hard < want:
        raise ConfigError(
            f"HOSTAUTH_MAX_CONNECTIONS={settings.max_connections} needs {want} open files a process;"
            f" the limit is {soft} (hard {hard}): raise it (ulimit -n, systemd LimitNOFILE,"
            " the container's nofile) or lower HOSTAUTH_MAX_CONNECTIONS"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want
