"""A real, throw-away PostgreSQL server on a loopback port for tests and benchmarks."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL server not installed; run `make test`, which installs it with apt")
    return Path(found[-1]).parent


class Postgres:
    """initdb + postgres in a temp dir, as the `postgres` system user when we are root (initdb refuses root)."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run_as(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir, 0o700)
        if not self.data.exists():
            subprocess.run(
                self._run_as([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user,
                              "--no-sync", "-E", "UTF8"]),
                check=True, capture_output=True,
            )
        self.proc = subprocess.Popen(
            self._run_as([str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                          "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                          "-c", "max_connections=300", "-c", "shared_buffers=128MB"]),
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "server.log", "ab"),  # noqa: SIM115
        )
        import time

        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"postgres did not start: {(self.dir / 'server.log').read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
