"""Cameras found on the clinic's LAN by mDNS: IP cameras that announce an `_rtsp._tcp` service (with the stream's
path in the TXT record's `path`). A configured camera named by `mdns_name` is looked up here, so it is found
again when its address changes; with `media.discover_cameras`, every announcing camera is used.

The browsing only; opening the cameras is `gateway.media.camera`. Not the gateway announcing itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

RTSP_SERVICE = "_rtsp._tcp.local."
RESOLVE_TIMEOUT_MS = 3000


@dataclass(frozen=True, slots=True)
class FoundCamera:
    name: str  # the service instance name, e.g. "Exam room camera"
    host: str
    port: int
    path: str

    def url(self, path: str | None = None) -> str:
        where = f"[{self.host}]" if ":" in self.host else self.host
        wanted = path if path is not None else self.path
        return f"rtsp://{where}:{self.port}{wanted if wanted.startswith('/') else '/' + wanted}"


def camera_id(name: str, taken: set[str]) -> str:
    """A device id from an announced name: 'Exam room camera' -> 'exam-room-camera' (unique among `taken`)."""
    base = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:56] or "camera"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def instance_name(service_name: str) -> str:
    return service_name.removesuffix("." + RTSP_SERVICE)


class CameraDiscovery:
    def __init__(self, interfaces: list[str], *, on_found: Callable[[FoundCamera], None] | None = None) -> None:
        self.interfaces = interfaces
        self.on_found = on_found
        self.cameras: dict[str, FoundCamera] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._zeroconf: AsyncZeroconf | None = None

    def url_of(self, name: str, path: str | None = None) -> str | None:
        found = self.cameras.get(name)
        return None if found is None else found.url(path)

    async def run(self) -> None:
        if self.interfaces:
            v4 = all(isinstance(ipaddress.ip_address(a), ipaddress.IPv4Address) for a in self.interfaces)
            self._zeroconf = AsyncZeroconf(interfaces=self.interfaces, ip_version=IPVersion.V4Only if v4 else None)
        else:
            self._zeroconf = AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
        browser = AsyncServiceBrowser(self._zeroconf.zeroconf, RTSP_SERVICE, handlers=[self._changed])
        log.info("looking for cameras on the LAN (mDNS %s)", RTSP_SERVICE)
        try:
            await asyncio.Event().wait()
        finally:
            await browser.async_cancel()
            for task in self._pending:
                task.cancel()
            await self._zeroconf.async_close()

    def _changed(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            gone = self.cameras.pop(instance_name(name), None)
            if gone is not None:
                log.info("camera %r no longer announces itself", gone.name)
            return
        task = asyncio.ensure_future(self._resolve(service_type, name))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        assert self._zeroconf is not None
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zeroconf.zeroconf, RESOLVE_TIMEOUT_MS):
            log.warning("camera service %s announced but did not resolve", name)
            return
        addresses = info.parsed_scoped_addresses()
        if not addresses or info.port is None:
            return
        raw = (info.properties or {}).get(b"path")
        path = raw.decode("utf-8", "replace") if isinstance(raw, bytes) and raw else "/"
        found = FoundCamera(instance_name(name), addresses[0], info.port, path)
        before = self.cameras.get(found.name)
        self.cameras[found.name] = found
        if before != found:
            log.info("camera %r found at %s", found.name, found.url())
            if self.on_found is not None and before is None:
                self.on_found(found)
