"""Command line of the gateway service: `python -m gateway --config gateway.toml [--check-config]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from gateway import app
from gateway.config import GatewayConfig
from gateway.outbox import OutboxError
from gateway.tomlconfig import ConfigError, load, markdown_reference

log = logging.getLogger("gateway")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gateway", description="Clinic edge gateway service.")
    p.add_argument("--config", type=Path, default=Path("/etc/clinic-gateway/gateway.toml"),
                   help="TOML configuration file (default: %(default)s)")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument("--config-reference", action="store_true",
                   help="print every setting with its default and meaning (Markdown) and exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


async def _serve(config: GatewayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.run(config, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.config_reference:
        print(markdown_reference(GatewayConfig), end="")
        return 0
    logging.basicConfig(level=args.log_level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load(args.config, GatewayConfig)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    missing = [p for p in config.mqtt.secret_files() if not p.is_file()]
    if missing:
        print(f"gateway: {args.config}: file {missing[0]} (named in [mqtt]) does not exist", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config}: configuration is valid")
        return 0
    try:
        asyncio.run(_serve(config))
    except OutboxError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
