"""Command line of the gateway service: `python -m gateway --config gateway.toml [--check-config]`,
`python -m gateway restore --config gateway.toml [--force]` to restore the outbox from its replica, and
`python -m gateway replicate --config gateway.toml` to run Litestream outside the service ([replication] mode
= "external", the clinic-gateway-litestream unit), and `python -m gateway enrol --config gateway.toml
--token-file FILE` to join the fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from gateway import app, enrolment, remote_config
from gateway.config import GatewayConfig
from gateway.outbox import OutboxError, skip_seqs_after_restore
from gateway.replication import ReplicationError, external_replication_problem, replicate_until_stopped, restore
from gateway.sdnotify import Notifier
from gateway.tomlconfig import ConfigError, load, markdown_reference

log = logging.getLogger("gateway")

DEFAULT_CONFIG = Path("/etc/clinic-gateway/gateway.toml")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gateway", description="Clinic edge gateway service.",
        epilog="python -m gateway restore --config PATH [--force] restores the outbox from its Litestream "
               "replica (see python -m gateway restore -h); python -m gateway replicate --config PATH runs "
               "Litestream for the outbox in a process of its own (see python -m gateway replicate -h); python -m "
               "gateway enrol --config PATH --token-file FILE enrols the gateway with HQ (see python -m gateway "
               "enrol -h).")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="TOML configuration file (default: %(default)s)")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument("--config-reference", action="store_true",
                   help="print every setting with its default and meaning (Markdown) and exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def parse_restore_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gateway restore",
        description="Restore the outbox database from its Litestream replica ([replication] in the "
                    "configuration), then move its next sequence number forward so that numbers the lost "
                    "outbox handed out are never used again. Stop the gateway first: it must not run "
                    "during a restore.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="the gateway's TOML configuration file (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing outbox file (without it, an existing outbox is never touched)")
    return p.parse_args(argv)


def parse_replicate_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gateway replicate",
        description="Replicate the outbox with Litestream in this process, until SIGTERM, for a gateway whose "
                    "[replication] mode is \"external\" (its own systemd unit, clinic-gateway-litestream). "
                    "Waits for the gateway to create the outbox; a clean stop ships the last commits.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="the gateway's TOML configuration file (default: %(default)s)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def parse_enrol_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gateway enrol",
        description="Join the fleet: make this gateway's key (it never leaves the gateway), send HQ "
                    "([enrolment] hq_url) a certificate request with the one-time token, and store the "
                    "certificate and CA at [mqtt] cert_file and ca_file (the key at key_file, mode 0600). "
                    "Does nothing and exits 0 when a valid certificate for this gateway is already there.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="the gateway's TOML configuration file (default: %(default)s)")
    p.add_argument("--token-file", type=Path, required=True,
                   help="file holding the enrolment token a coordinator created at HQ")
    p.add_argument("--renew", action="store_true",
                   help="enrol even though the current certificate is still valid (renewal before it expires; "
                        "HQ then revokes the old certificate as superseded)")
    return p.parse_args(argv)


def load_config(path: Path, *, check_files: bool = True) -> GatewayConfig | None:
    """The validated configuration, or None after printing why it is not usable."""
    try:
        config = load(path, GatewayConfig)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return None
    if not check_files:
        return config
    cameras = [f for c in config.camera for f in c.secret_files()]
    for section, files in (("mqtt", config.mqtt.secret_files()), ("replication", config.replication.secret_files()),
                           ("camera", cameras)):
        missing = [p for p in files if not p.is_file()]
        if missing:
            hint = ""
            if missing[0] in (config.mqtt.cert_file, config.mqtt.key_file, config.mqtt.ca_file):
                hint = f"; enrol this gateway first: clinic-gateway enrol --config {path} --token-file FILE"
            print(f"gateway: {path}: file {missing[0]} (named in [{section}]) does not exist{hint}", file=sys.stderr)
            return None
    return config


def enrol_main(argv: list[str]) -> int:
    args = parse_enrol_args(argv)
    config = load_config(args.config, check_files=False)
    if config is None:
        return 2
    try:
        done = enrolment.enrol(config, enrolment.read_token(args.token_file), renew=args.renew)
    except enrolment.EnrolmentFailed as exc:
        print(f"gateway: enrol: {exc}", file=sys.stderr)
        return 1
    if done.already:
        print(f"gateway {done.gateway_id} is already enrolled (certificate {done.serial} valid until "
              f"{done.not_after:%Y-%m-%d %H:%M} UTC): nothing to do")
    else:
        print(f"gateway {done.gateway_id} enrolled: certificate {done.serial} valid until "
              f"{done.not_after:%Y-%m-%d %H:%M} UTC, stored in {config.mqtt.cert_file}")
    return 0


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve(loaded: remote_config.Loaded) -> None:
    await app.run(loaded.config, _stop_on_signals(), Notifier.from_environment(), loaded)


async def _replicate(config: GatewayConfig) -> None:
    await replicate_until_stopped(config.outbox_path, config.replication, _stop_on_signals(),
                                  Notifier.from_environment())


def replicate_main(argv: list[str]) -> int:
    args = parse_replicate_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = load_config(args.config)
    if config is None:
        return 2
    problem = external_replication_problem(config.replication)
    if problem:
        print(f"gateway: replicate: {args.config}: {problem}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_replicate(config))
    except ReplicationError as exc:
        print(f"gateway: replicate: {exc}", file=sys.stderr)
        return 1
    return 0


def restore_main(argv: list[str]) -> int:
    args = parse_restore_args(argv)
    config = load_config(args.config)
    if config is None:
        return 2
    path = config.outbox_path
    try:
        result = restore(path, config.replication, force=args.force)
    except ReplicationError as exc:
        print(f"gateway: restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {path} from {result.replica_url} (Litestream transaction {result.txid})")
    try:
        old, new = skip_seqs_after_restore(path)
    except OutboxError as exc:
        print(f"gateway: restore: {exc}\nDo not start the gateway before its next_seq is moved forward: run "
              "this command again with --force.", file=sys.stderr)
        return 1
    print(f"next sequence number moved from {old} to {new}: numbers the lost outbox may have handed out "
          "after its last replicated commit are never used again")
    print("the gateway can be started")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["restore"]:
        return restore_main(argv[1:])
    if argv[:1] == ["replicate"]:
        return replicate_main(argv[1:])
    if argv[:1] == ["enrol"]:
        return enrol_main(argv[1:])
    args = parse_args(argv)
    if args.config_reference:
        print(markdown_reference(GatewayConfig), end="")
        return 0
    logging.basicConfig(level=args.log_level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = load_config(args.config)
    if config is None:
        return 2
    if args.check_config:
        print(f"{args.config}: configuration is valid")
        return 0
    try:
        # The TOML file was valid just now; with the HQ-managed settings persisted in the data directory over it.
        loaded = remote_config.load(args.config)
        asyncio.run(_serve(loaded))
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except (OutboxError, ReplicationError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
