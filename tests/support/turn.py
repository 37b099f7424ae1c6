"""A real TURN server for tests: Debian's coturn on loopback, with the TURN REST API's shared secret (as HQ's
[calls] turn_secret_file), relaying to loopback peers. Started and stopped by the test."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port


def free_udp_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Coturn:
    """`with Coturn() as turn:` listens on turn.port (UDP, loopback); `turn.secret_file` holds its secret."""

    def __init__(self, secret: str = "turn-test-secret") -> None:
        binary = shutil.which("turnserver") or "/usr/bin/turnserver"
        if not Path(binary).exists():
            raise RuntimeError("coturn is not installed; run `make test`, which installs it with apt")
        self.binary = binary
        self.secret = secret
        self.port = free_udp_port()
        self.dir = Path(tempfile.mkdtemp(prefix="coturn-"))
        self.secret_file = self.dir / "secret"
        self.secret_file.write_text(secret)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        relay = free_port()  # a free area for the relayed ports (coturn wants a range)
        low = 20000 + relay % 30000
        args = [self.binary, "-n", "--listening-ip=127.0.0.1", f"--listening-port={self.port}",
                "--relay-ip=127.0.0.1", f"--min-port={low}", f"--max-port={low + 200}", "--allow-loopback-peers",
                "--use-auth-secret", f"--static-auth-secret={self.secret}", "--realm=clinic.test", "--no-tls",
                "--no-dtls", "--no-cli", "--fingerprint", "--no-software-attribute", "--simple-log",
                f"--log-file={self.dir / 'turn.log'}", f"--pidfile={self.dir / 'turn.pid'}",
                f"--userdb={self.dir / 'turndb'}", "--no-tcp-relay"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not self._answers_stun():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.dir / "turn.log"
                shown = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"coturn did not start: {shown}")

    def _answers_stun(self) -> bool:
        """A STUN binding request (RFC 5389) answered: the server is up."""
        import os
        import socket

        request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(request, ("127.0.0.1", self.port))
            try:
                reply, _ = s.recvfrom(2048)
            except OSError:
                return False
        return reply[:2] == b"\x01\x01" and reply[8:20] == request[8:20]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Coturn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
