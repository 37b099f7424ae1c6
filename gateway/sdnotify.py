"""systemd's service notification protocol (sd_notify(3)): READY, WATCHDOG, STOPPING and STATUS datagrams
to $NOTIFY_SOCKET, and a watchdog feeder that pings only while the caller says the service is healthy.

Not a health policy: what counts as healthy is the caller's business (a check function). Without
$NOTIFY_SOCKET (not started by systemd) every call is a no-op. Standard library only; shared by both services.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to one socket: a path, or an abstract socket written '@name'.

    A notification that cannot be sent is logged once and dropped: systemd's bookkeeping must never
    be the reason a clinic service stops.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self.sent_total = 0
        self._target: str | bytes | None = None
        self._sock: socket.socket | None = None
        self._warned = False
        if self.address is None:
            return
        if self.address.startswith("@"):
            self._target = b"\0" + self.address[1:].encode()  # Linux abstract namespace
        elif self.address.startswith("/"):
            self._target = self.address
        else:
            log.warning("NOTIFY_SOCKET=%r is neither an absolute path nor '@name'; not notifying systemd",
                        self.address)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        return cls((os.environ if env is None else env).get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def notify(self, **fields: str) -> bool:
        """Send `KEY=value` lines in one datagram (e.g. READY="1", STATUS="..."); True if it was sent."""
        if self._target is None:
            return False
        lines = []
        for key, value in fields.items():
            if "\n" in value:
                raise ValueError(f"sd_notify field {key} must be one line, got {value!r}")
            lines.append(f"{key}={value}")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a full receive queue drops a ping, never stalls the loop
            self._sock.sendto("\n".join(lines).encode(), self._target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                why = "its queue is full" if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) else str(exc)
                log.warning("cannot notify systemd at %s: %s (further failures are not logged)", self.address, why)
            return False
        self.sent_total += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY="1", **({"STATUS": status} if status else {}))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING="1", **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG="1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """How often to ping: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises; None when systemd
    expects no pings from this process (no watchdog, or $WATCHDOG_PID names another process)."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != (os.getpid() if pid is None else pid)):
        return None
    return int(usec) / 2 / 1_000_000


@dataclass(frozen=True, slots=True)
class Health:
    """The caller's verdict for one watchdog tick: ping only if `ok`; `status` is shown by systemctl status."""

    ok: bool
    status: str


def tasks_ended(tasks: Mapping[str, asyncio.Future[Any]]) -> list[str]:
    """The names of the tasks that are no longer running (finished, failed or cancelled)."""
    return [name for name, task in tasks.items() if task.done()]


async def feed_watchdog(notifier: Notifier, interval_s: float, check: Callable[[], Health]) -> None:
    """Ping every `interval_s` while `check()` says healthy; runs until cancelled.

    It runs on the service's event loop, so a blocked loop stops the pings by itself, and systemd
    restarts the service after WatchdogSec. The status line is sent whenever it changes.
    """
    shown = ""
    withheld = False
    while True:
        health = check()
        if health.ok:
            if withheld:
                log.warning("service healthy again (%s); feeding the systemd watchdog again", health.status)
                withheld = False
            notifier.notify(WATCHDOG="1", **({"STATUS": health.status} if health.status != shown else {}))
        else:
            if not withheld:
                log.error("not feeding the systemd watchdog: %s", health.status)
                withheld = True
            if health.status != shown:
                notifier.status(f"unhealthy: {health.status}")
        shown = health.status
        await asyncio.sleep(interval_s)
