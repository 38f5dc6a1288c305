"""`python -m server [--dev]`: the service on gRPC and Connect."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from server.app import serve
from server.config import ConfigError, Settings
from server.crypto import Sealer
from server.cursor import CursorCodec
from server.keys import load_keyring
from server.service import HostAuthService
from server.store import TokenStore, connect_pool, cursor_key

log = logging.getLogger("server")


async def run(settings: Settings, dsn: str) -> None:
    sealer = Sealer(load_keyring(settings))
    pool = await connect_pool(dsn)
    cursors = CursorCodec(await cursor_key(pool))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serve(HostAuthService(TokenStore(pool), sealer, cursors), settings) as running:
            log.info("serving Connect on %s and gRPC on %s", running.http_url, running.grpc)
            await stop.wait()
            log.info("shutting down")
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument(
        "--dev",
        action="store_true",
        help="development mode: embedded PostgreSQL and a generated keyring when none is configured",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(os.environ, dev=args.dev)
        # Fail on a bad keyring before starting a database.
        load_keyring(settings)
    except ConfigError as exc:
        print(f"hostauth: {exc}", file=sys.stderr)
        return 2
    if settings.database_url is not None:
        asyncio.run(run(settings, settings.database_url))
        return 0
    from server.embedded_pg import EmbeddedPostgres

    # Started from the main thread: the server's parent-death signal is tied
    # to the thread that spawned it.
    with EmbeddedPostgres(settings.data_dir / "pgdata") as pg:
        log.info("embedded PostgreSQL in %s", settings.data_dir / "pgdata")
        asyncio.run(run(settings, pg.dsn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
