"""`python -m hq serve --config PATH [--check-config]` (console script `clinic-hq`): run or validate HQ.

Configuration errors print one line on stderr and exit with status 2; SIGINT/SIGTERM stop HQ cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from gateway import tomlconfig
from hq.app import StartupError, create_app
from hq.config import HqConfig

log = logging.getLogger("hq")

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinic-hq", description="Clinic HQ: ingest, JSON API and web console.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run HQ")
    serve.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    serve.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = tomlconfig.load(args.config, HqConfig)
    except tomlconfig.ConfigError as exc:
        print(f"clinic-hq: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for secret in [config.database.password_file, *config.mqtt.secret_files()]:
        if secret is not None and not secret.is_file():
            print(f"clinic-hq: {args.config}: secret file {secret} does not exist", file=sys.stderr)
            return EXIT_CONFIG
    if args.check_config:
        print(f"{args.config}: configuration is valid")
        return 0
    logging.basicConfig(level=args.log_level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(serve(config))
    except StartupError as exc:
        print(f"clinic-hq: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(config: HqConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set or SIGINT/SIGTERM arrives, then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_app(config), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.http.host, config.http.port)
        await site.start()
        log.info("hq listening on http://%s:%s", config.http.host, config.http.port)
        await stop.wait()
        log.info("hq stopping")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


if __name__ == "__main__":
    sys.exit(main())
