"""The receiving end of sd_notify for tests: a real unix datagram socket standing in for systemd's
$NOTIFY_SOCKET, recording every notification with the time it arrived. Not systemd: it enforces nothing.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Notification:
    at: float  # time.monotonic() on arrival
    fields: dict[str, str]


class NotifySocket:
    """`with NotifySocket() as ns:` binds a socket; pass `ns.environ(watchdog_s=...)` to the service.

    `abstract=True` binds in the Linux abstract namespace ('@name' in NOTIFY_SOCKET), as systemd
    itself may hand out.
    """

    def __init__(self, *, abstract: bool = False) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="notify-"))
        if abstract:
            name = f"clinic-test-notify-{os.getpid()}-{time.monotonic_ns()}"
            self.address, bind_to = f"@{name}", "\0" + name
        else:
            self.address = bind_to = str(self._dir / "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(bind_to)
        self._sock.settimeout(0.2)
        self._lock = threading.Lock()
        self._received: list[Notification] = []
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def environ(self, watchdog_s: float | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog_s is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog_s * 1_000_000))
        return env

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self._received.append(Notification(time.monotonic(), fields))

    @property
    def received(self) -> list[Notification]:
        with self._lock:
            return list(self._received)

    def with_field(self, key: str, value: str | None = None) -> list[Notification]:
        return [n for n in self.received if key in n.fields and (value is None or n.fields[key] == value)]

    def wait_for(self, key: str, value: str | None = None, timeout_s: float = 30.0, count: int = 1) -> Notification:
        """The `count`-th notification carrying `key` (=`value`), waiting for it."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.with_field(key, value)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {count}x {key}={value or '*'} within {timeout_s} s; got {self.received}")
            time.sleep(0.02)

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        self._thread.join(2)
        for child in self._dir.iterdir():
            child.unlink()
        self._dir.rmdir()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
