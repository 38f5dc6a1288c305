"""Worker 0 refreshes OAuth tokens nearing expiry before anyone reads them
(HOSTAUTH_REFRESH_AHEAD=on), so readers rarely wait; the once-only rule is
the coordinator's, shared with every reader of every process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hostauth.core.service import HostAuthService
from hostauth.log_repeats import Repeats

log = logging.getLogger(__name__)
_failures = Repeats(log)

EVERY_S = 15.0


async def refresh_ahead(core_of: Callable[[], HostAuthService | None], every_s: float = EVERY_S) -> None:
    """For ever: a round of due tokens every every_s (none while the core is not built)."""
    while True:
        core = core_of()
        refresher = core.refresher if core is not None else None
        if refresher is not None:
            try:
                done = await refresher.refresh_due()
            except Exception as exc:  # noqa: BLE001 # an outage, say: the next round tries again
                _failures.log("refresh ahead failed: %s", type(exc).__name__)
            else:
                if done:
                    log.info("refreshed %d token(s) ahead of their expiry", done)
        await asyncio.sleep(every_s)
