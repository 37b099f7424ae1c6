"""`python -m hq serve --config PATH [--check-config]` (console script `clinic-hq`): run or validate HQ;
`python -m hq restore --config PATH [--force]`: restore its SQLite database from the Litestream replica;
`python -m hq replicate --config PATH`: run Litestream outside HQ ([replication] mode = "external");
`python -m hq ca init|issue|crl --config PATH`: the fleet's certificate authority.

Configuration errors print one line on stderr and exit with status 2; SIGINT/SIGTERM stop HQ cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from aiohttp import web

from gateway import tomlconfig
from gateway.atomic_file import write_atomically
from gateway.replication import ReplicationError, external_replication_problem, replicate_until_stopped, restore
from gateway.sdnotify import Health, Notifier, feed_watchdog, watchdog_interval_s
from gateway.wire import valid_gateway_id
from hq import accounts, audit, ca, db, heap, revocation
from hq.app import StartupError, create_app
from hq.appkeys import FATAL, INGEST, LINK
from hq.config import HqConfig
from hq.replay import mark_replay_due

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
    restore = sub.add_parser(
        "restore", help="restore the SQLite database from its Litestream replica (stop HQ first)",
        description="Restore HQ's SQLite database from its Litestream replica ([replication] in the "
                    "configuration) and mark it so that, when HQ next starts, every gateway is asked to send "
                    "again what it still holds after HQ's restored watermark. HQ must not run during a restore. "
                    "A PostgreSQL database is restored with PostgreSQL's own tools instead.")
    restore.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    restore.add_argument("--timestamp", type=_utc_time, default=None, metavar="TIME",
                         help="restore the database as it was at this time (ISO 8601, e.g. 2026-11-22T08:30:00Z) "
                              "instead of the latest copy")
    restore.add_argument("--force", action="store_true",
                         help="replace an existing database file (without it, an existing database is never touched)")
    ca_parser = sub.add_parser("ca", help="the fleet's certificate authority ([ca] in the configuration)")
    ca_sub = ca_parser.add_subparsers(dest="ca_command", required=True)
    init = ca_sub.add_parser("init", help="create the CA (key 0600, certificate) and an empty revocation list")
    init.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    issue = ca_sub.add_parser(
        "issue", help="issue a key and certificate for the broker (with --server-name) or an HQ worker's MQTT client",
        description="Writes NAME.key (0600), NAME.pem and ca.pem into --out-dir. Without --server-name: a TLS client "
                    "identity for an HQ worker, whose NAME must start with 'hq-' and be its [mqtt] client_id's "
                    "broker username. With --server-name (repeatable): the broker's TLS server certificate.")
    issue.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    issue.add_argument("--name", required=True, help="the certificate's CN, e.g. hq-1 or broker.example.org")
    issue.add_argument("--server-name", action="append", default=[], metavar="HOST",
                       help="a DNS name or IP address clients use to reach the broker")
    issue.add_argument("--out-dir", type=Path, required=True, help="where to write the files")
    issue.add_argument("--days", type=int, default=None, help="validity (default: ca.certificate_days)")
    crl = ca_sub.add_parser("crl", help="write the revocation list afresh from the database (e.g. after a restore)")
    crl.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    migrate = sub.add_parser("migrate", help="bring the database schema up to date (HQ also does it at every start)")
    migrate.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    user = sub.add_parser("user", help="console accounts: add, deactivate, list")
    user.add_argument("action", choices=["add", "deactivate", "list"])
    user.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    user.add_argument("--username")
    user.add_argument("--role", choices=["admin", "coordinator", "department_head", "expert", "clinic_staff"])
    user.add_argument("--display-name")
    user.add_argument("--clinic", help="the clinic of a clinic_staff account")
    user.add_argument("--password-file", type=Path,
                      help="file holding the initial password (never on the command line); without it the account "
                           "can only use API tokens")
    token = sub.add_parser("token", help="API tokens: create one for a user (printed once)")
    token.add_argument("action", choices=["create"])
    token.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    token.add_argument("--username", required=True)
    token.add_argument("--name", required=True, help="what the token is for, e.g. 'monitoring'")
    audit_cmd = sub.add_parser("audit", help="the audit log: verify its hash chain")
    audit_cmd.add_argument("action", choices=["verify"])
    audit_cmd.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    replicate = sub.add_parser(
        "replicate", help="replicate the SQLite database with Litestream in this process ([replication] mode = "
                          "\"external\")",
        description="Replicate HQ's SQLite database with Litestream in this process, until SIGTERM, when "
                    "[replication] mode is \"external\" (its own systemd unit, clinic-hq-litestream). Waits for HQ "
                    "to create the database; a clean stop ships the last commits.")
    replicate.add_argument("--config", type=Path, required=True, help="the HQ TOML configuration file")
    replicate.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
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
    if args.command == "ca":  # before the secrets check: `ca issue` makes the [mqtt] certificate it names
        return ca_command(config, args)
    for secret in [config.database.password_file, *config.mqtt.secret_files(), *config.replication.secret_files(),
                   *config.calls.secret_files()]:
        if secret is not None and not secret.is_file():
            print(f"clinic-hq: {args.config}: secret file {secret} does not exist", file=sys.stderr)
            return EXIT_CONFIG
    if args.command == "restore":
        return restore_database(config, force=args.force, timestamp=args.timestamp)
    if args.command == "replicate":
        return replicate_database(config, args.log_level)
    if args.command in ("migrate", "user", "token", "audit"):
        return admin_command(config, args)
    if args.check_config:
        print(f"{args.config}: configuration is valid")
        return 0
    logging.basicConfig(level=args.log_level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        failure = asyncio.run(serve(config, notifier=Notifier.from_environment()))
    except StartupError as exc:
        print(f"clinic-hq: {exc}", file=sys.stderr)
        return 1
    if failure:
        print(f"clinic-hq: stopped: {failure}", file=sys.stderr)
        return 1
    return 0


def _utc_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time like 2026-11-22T08:30:00Z") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC or an offset like +08:00")
    return t


def sqlite_path(config: HqConfig, command: str, instead: str) -> Path | None:
    """The SQLite file Litestream works on, or None after saying why there is none and what to do `instead`."""
    url = db.database_url(config.database.url, config.database.password_file)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        print(f"clinic-hq: {command}: the database is {url.render_as_string(hide_password=True)}; Litestream "
              f"replicates only a SQLite file: {instead}", file=sys.stderr)
        return None
    return Path(url.database)


def replicate_database(config: HqConfig, log_level: str) -> int:
    """`replicate`: the same Litestream supervisor HQ runs in 'child' mode, in this process."""
    path = sqlite_path(config, "replicate", "back PostgreSQL up with its own tools (pg_dump, base backups)")
    if path is None:
        return EXIT_CONFIG
    problem = external_replication_problem(config.replication)
    if problem:
        print(f"clinic-hq: replicate: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=log_level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await replicate_until_stopped(path, config.replication, stop, Notifier.from_environment())

    try:
        asyncio.run(run())
    except ReplicationError as exc:
        print(f"clinic-hq: replicate: {exc}", file=sys.stderr)
        return 1
    return 0


def restore_database(config: HqConfig, *, force: bool = False, timestamp: datetime | None = None) -> int:
    """`restore`: the SQLite file from its replica, then the mark that makes HQ ask the gateways to replay."""
    path = sqlite_path(config, "restore", "restore PostgreSQL with its own tools (pg_restore, PITR)")
    if path is None:
        return EXIT_CONFIG
    try:
        result = restore(path, config.replication, force=force, timestamp=timestamp)
    except ReplicationError as exc:
        print(f"clinic-hq: restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {path} from {result.replica_url} (Litestream transaction {result.txid})")
    engine = db.create_engine_for(db.database_url(config.database.url, config.database.password_file))
    try:
        mark_replay_due(engine)
    except sa.exc.SQLAlchemyError as exc:
        print(f"clinic-hq: restore: the database was restored, but marking it for the gateways' replay failed: "
              f"{getattr(exc, 'orig', None) or exc}. Run this command again with --force before starting HQ.",
              file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print("when HQ next starts, it asks every gateway to send again what it holds after HQ's restored "
          "watermark (gateways keep confirmed entries for outbox.retain_sent_h)")
    return 0


def ca_command(config: HqConfig, args: argparse.Namespace) -> int:
    """`ca init | issue | crl`; errors are one line on stderr and exit status 1."""
    section = config.ca
    files = ca.CaFiles(section.dir, section.crl_path)
    now = datetime.now(UTC)
    try:
        if args.ca_command == "init":
            authority = files.create(section.name, now=now, validity_days=section.ca_days)
            files.write_crl(ca.build_crl(authority, [], last_update=ca.crl_last_update(None, now),
                                         next_update=now + timedelta(days=section.crl_days)))
            print(f"CA {authority.name!r} created: {files.key_path} (0600), {files.cert_path}; revocation list "
                  f"{files.crl_path}")
            return 0
        if args.ca_command == "issue":
            return _issue(files, section.certificate_days if args.days is None else args.days, args, now)
        engine = db.create_engine_for(db.database_url(config.database.url, config.database.password_file))
        try:
            db.create_schema(engine)
            crl = revocation.publish_crl(engine, files, files.load(), now=now, crl_days=section.crl_days)
        finally:
            engine.dispose()
        print(f"revocation list {files.crl_path} written: {len(list(crl))} revoked certificate(s); reload the broker")
        return 0
    except (ca.CaError, OSError, sa.exc.SQLAlchemyError) as exc:
        print(f"clinic-hq: ca {args.ca_command}: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 1


def _issue(files: ca.CaFiles, days: int, args: argparse.Namespace, now: datetime) -> int:
    name, servers = args.name, args.server_name
    if not servers and not (name.startswith(ca.HQ_IDENTITY_PREFIX) and valid_gateway_id(name)):
        print(f"clinic-hq: ca issue: an HQ client identity's name must start with {ca.HQ_IDENTITY_PREFIX!r} "
              f"(letters, digits, '-', '_', '.'), got {name!r}; a broker certificate needs --server-name",
              file=sys.stderr)
        return EXIT_CONFIG
    if not 1 <= days <= 825:
        print(f"clinic-hq: ca issue: --days {days} must be 1-825", file=sys.stderr)
        return EXIT_CONFIG
    authority = files.load()
    key, cert = ca.issue_identity(authority, name, now=now, validity_days=days, server_names=servers)
    key_path, cert_path = ca.write_identity(args.out_dir, name, key, cert)
    write_atomically(args.out_dir / "ca.pem", ca.certificate_pem(authority.certificate))
    kind = f"TLS server certificate for {', '.join(servers)}" if servers else "TLS client identity"
    print(f"{kind} {name!r}: {key_path} (0600), {cert_path}, CA {args.out_dir / 'ca.pem'}; valid until "
          f"{cert.not_valid_after_utc:%Y-%m-%d}")
    return 0
def admin_command(config: HqConfig, args: argparse.Namespace) -> int:
    """`migrate`, `user`, `token`, `audit verify`: one-shot work on the database, errors as one line."""
    engine = db.create_engine_for(db.database_url(config.database.url, config.database.password_file))
    try:
        db.upgrade_schema(engine)
        if args.command == "migrate":
            print(f"database schema at revision {db.current_revision(engine)}")
            return 0
        if args.command == "audit":
            verdict = audit.verify(engine)
            print(verdict)
            return 0 if verdict.ok else 1
        if args.command == "token":
            with engine.begin() as conn:
                user = accounts.user_by_name(conn, args.username)
                if user is None or not user["active"]:
                    print(f"clinic-hq: token: no active user {args.username!r}", file=sys.stderr)
                    return 1
                token = accounts.create_api_token(conn, user["id"], args.name)
                audit.record(conn, "cli", "token.create", "user", user["id"], detail={"name": args.name})
            print(token)
            return 0
        return user_command(engine, args)
    except (accounts.AccountError, OSError) as exc:
        print(f"clinic-hq: {args.command}: {exc}", file=sys.stderr)
        return 1
    except (sa.exc.SQLAlchemyError, db.SchemaError) as exc:
        print(f"clinic-hq: {args.command}: database: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def user_command(engine: sa.Engine, args: argparse.Namespace) -> int:
    with engine.begin() as conn:
        if args.action == "list":
            for u in accounts.list_users(conn):
                print(f"{u['username']}\t{u['role']}\t{u['clinic_id'] or '-'}\t{'active' if u['active'] else 'off'}")
            return 0
        if not args.username:
            raise accounts.AccountError("--username is required")
        if args.action == "deactivate":
            user = accounts.user_by_name(conn, args.username)
            if user is None:
                raise accounts.AccountError(f"no user {args.username!r}")
            ended = accounts.deactivate_user(conn, user["id"])
            audit.record(conn, "cli", "user.deactivate", "user", user["id"], detail={"sessions_ended": ended})
            print(f"deactivated {args.username}; {ended} sessions ended")
            return 0
        if not args.role:
            raise accounts.AccountError("--role is required")
        password = args.password_file.read_text(encoding="utf-8").strip() if args.password_file else None
        user_id = accounts.create_user(conn, args.username, args.role, display_name=args.display_name,
                                       password=password, clinic_id=args.clinic)
        audit.record(conn, "cli", "user.create", "user", user_id, detail={"username": args.username,
                                                                           "role": args.role})
        print(f"created {args.role} {args.username} (id {user_id})")
        return 0


async def serve(config: HqConfig, stop: asyncio.Event | None = None, notifier: Notifier | None = None) -> str | None:
    """Serve until `stop` is set or SIGINT/SIGTERM arrives, then shut down cleanly.

    Returns None after a requested stop, or why HQ had to stop (a background task died). Under systemd
    (`notifier`): READY once HTTP is served and the ingest writer runs; the watchdog is fed only while the
    ingest writer and the MQTT link task are alive.
    """
    stop = stop or asyncio.Event()
    notifier = notifier or Notifier(None)
    feeder: asyncio.Task[None] | None = None
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
        # What start-up made lives as long as the process: out of the collector's sight, a full collection no
        # longer walks it, which took expert matching's p99 from ~50 ms to ~15 ms (bench/matching.py).
        heap.settle()
        fatal = app[FATAL]
        fatal.add_done_callback(lambda _: stop.set())
        ingest = app[INGEST]
        while not ingest.writer_alive and not fatal.done() and not stop.is_set():
            await asyncio.sleep(0.01)  # the writer task has been created; READY once it runs
        if ingest.writer_alive:
            notifier.ready(f"serving http://{config.http.host}:{config.http.port}")

        def health() -> Health:
            # The link task ending (even cleanly) or the writer dying sets FATAL: HQ stops then anyway.
            if fatal.done() or not ingest.writer_alive:
                return Health(False, fatal.result() if fatal.done() else "the ingest writer is not running")
            return Health(True, "connected to the broker" if app[LINK].is_connected else
                          "waiting for the MQTT broker (gateways buffer meanwhile)")

        interval = watchdog_interval_s()
        if interval is not None and notifier.enabled:
            feeder = asyncio.create_task(feed_watchdog(notifier, interval, health), name="hq-watchdog")
        await stop.wait()
        failure = fatal.result() if fatal.done() else None
        log.info("hq stopping%s", f" after a failure: {failure}" if failure else "")
        notifier.stopping(f"stopping after a failure: {failure}" if failure else "stopping")
    finally:
        if feeder is not None:
            feeder.cancel()
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return failure


if __name__ == "__main__":
    sys.exit(main())
