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
from hq.appkeys import FATAL
from hq.config import HqConfig

log = logging.getLogger("hq")

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinic-hq", description="Clinic HQ: ingest, JSON API and web console.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config-reference", help="print every setting with its default and meaning (Markdown)")
    serve = sub.add_parser("serve", help="run HQ")
    serve.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    serve.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "config-reference":
        print(tomlconfig.markdown_reference(HqConfig), end="")
        return 0
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
        failure = asyncio.run(serve(config))
    except StartupError as exc:
        print(f"clinic-hq: {exc}", file=sys.stderr)
        return 1
    if failure:
        print(f"clinic-hq: stopped: {failure}", file=sys.stderr)
        return 1
    return 0


async def serve(config: HqConfig, stop: asyncio.Event | None = None) -> str | None:
    """Serve until `stop` is set or SIGINT/SIGTERM arrives, then shut down cleanly.

    Returns None after a requested stop, or why HQ had to stop (a background task died).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    failure: str | None = None
    try:
        site = web.TCPSite(runner, config.http.host, config.http.port)
        await site.start()
        log.info("hq listening on http://%s:%s", config.http.host, config.http.port)
        fatal = app[FATAL]
        fatal.add_done_callback(lambda _: stop.set())
        await stop.wait()
        failure = fatal.result() if fatal.done() else None
        log.info("hq stopping%s", f" after a failure: {failure}" if failure else "")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return failure


if __name__ == "__main__":
    sys.exit(main())
