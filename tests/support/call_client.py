"""A call participant in Python (aiortc), doing what the console's call.js does: builds its transceivers from
the slot layout, sends a synthetic camera and microphone, receives every slot and counts (and, optionally,
reads the capture stamps of) what it decodes. How the offer reaches the gateway is the caller's `Signal`.

Also `loopback_ice()`: aioice skips loopback addresses, so tests give it 127.0.0.1 as the only host address.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from gateway.wire import SlotRole, slot_names
from tests.support.synthetic_camera import FramePainter, read_stamp, tone

EXPERT_SLOTS = (SlotRole.CAMERA, SlotRole.CLINIC_AUDIO, SlotRole.SEND_AUDIO, SlotRole.SEND_VIDEO,
                SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO, SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO)
VIEWER_SLOTS = (SlotRole.CAMERA, SlotRole.CLINIC_AUDIO)

Signal = Callable[[str, tuple[SlotRole, ...]], Awaitable[str]]  # offer SDP, slots -> answer SDP


@contextlib.contextmanager
def loopback_ice() -> Iterator[None]:
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original  # type: ignore[assignment]


def roomy_sockets(pc: RTCPeerConnection, size: int = 4 * 1024 * 1024) -> None:
    """Larger UDP receive buffers for a test participant's sockets (aioice's): many participants share one
    process on a busy machine, and a keyframe burst arriving while the loop is busy elsewhere would overflow
    the default buffer, which tests would then see as network loss."""
    import socket

    for transceiver in pc.getTransceivers():
        connection = getattr(transceiver.receiver.transport.transport, "_connection", None)
        for protocol in getattr(connection, "_protocols", []):
            sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class SyntheticCamera(MediaStreamTrack):
    kind = "video"

    def __init__(self, width: int = 160, height: int = 120, fps: int = 15) -> None:
        super().__init__()
        self.painter = FramePainter(width, height, seed=3)
        self.fps = fps
        self.index = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.index / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = self.painter.frame(self.index, time.time_ns() // 1_000_000)
        frame.pts = self.index * 90000 // self.fps
        frame.time_base = fractions.Fraction(1, 90000)
        self.index += 1
        return frame


class SyntheticMicrophone(MediaStreamTrack):
    kind = "audio"

    def __init__(self, hz: float = 660.0) -> None:
        super().__init__()
        self.hz = hz
        self.samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.samples / 48000
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = tone(self.samples, 960, self.hz)
        self.samples += 960
        return frame


@dataclass
class Received:
    frames: int = 0
    first_at: float | None = None
    last_at: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)


class CallClient:
    """One participant. `await client.join(signal)`, then watch `received[slot name]`."""

    def __init__(self, slots: tuple[SlotRole, ...] = EXPERT_SLOTS, *, send_video: bool = True,
                 send_audio: bool = True, read_stamps: bool = False, ice_servers: list[RTCIceServer] | None = None,
                 relay_only: bool = False) -> None:
        self.slots = slots
        self.send_video, self.send_audio, self.read_stamps = send_video, send_audio, read_stamps
        self.config = RTCConfiguration(iceServers=ice_servers or [],
                                       iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only
                                       else RTCIceTransportPolicy.ALL, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc: RTCPeerConnection | None = None
        self.received: dict[str, Received] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: list[asyncio.Task[None]] = []
        self.connections = 0


    async def join(self, signal: Signal) -> None:
        """Connect (again): a new connection replaces any earlier one, as call.js does after a network change
        (the old one is closed in the background, as a browser does: closing over a dead path can take long)."""
        if self.pc is not None:
            old, self.pc, tasks, self._tasks = self.pc, None, self._tasks, []
            self._closing.append(asyncio.create_task(self._close(old, tasks)))
        pc = self.pc = RTCPeerConnection(self.config)
        self.connections += 1
        names = slot_names(self.slots)
        receivers: dict[RTCRtpReceiver, str] = {}
        for role, name in zip(self.slots, names, strict=True):
            if role.gateway_sends:
                transceiver = pc.addTransceiver(role.kind, direction="recvonly")
                receivers[transceiver.receiver] = name
                self.received.setdefault(name, Received())
            elif role is SlotRole.SEND_VIDEO:
                pc.addTransceiver(SyntheticCamera() if self.send_video else "video", direction="sendonly")
            else:
                pc.addTransceiver(SyntheticMicrophone() if self.send_audio else "audio", direction="sendonly")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            name = next((n for r, n in receivers.items() if r.track is track), None)
            if name is not None:
                self._tasks.append(asyncio.create_task(self._pump(name, track)))

        await pc.setLocalDescription(await pc.createOffer())
        roomy_sockets(pc)
        answer = await signal(pc.localDescription.sdp, self.slots)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def _pump(self, name: str, track: MediaStreamTrack) -> None:
        stats = self.received[name]
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            stats.frames += 1
            stats.first_at = stats.first_at or now
            stats.last_at = now
            if isinstance(frame, av.VideoFrame):
                stats.sizes.add((frame.width, frame.height))
                if self.read_stamps:
                    capture_ms, _counter = read_stamp(frame.to_ndarray(format="gray"))
                    stats.latencies_ms.append(time.time_ns() / 1e6 - capture_ms)

    def frames(self, name: str) -> int:
        return self.received.get(name, Received()).frames

    async def wait_frames(self, name: str, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        start = self.frames(name)
        while self.frames(name) < start + count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: {self.frames(name) - start} of {count} frames in {timeout_s} s "
                                     f"(connection {self.pc.connectionState if self.pc else 'none'})")
            await asyncio.sleep(0.05)

    async def stats(self) -> dict[str, Any]:
        assert self.pc is not None
        return dict(await self.pc.getStats())

    @staticmethod
    async def _close(pc: RTCPeerConnection, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await pc.close()

    async def _close_pc(self) -> None:
        if self.pc is not None:
            pc, tasks, self.pc, self._tasks = self.pc, self._tasks, None, []
            await self._close(pc, tasks)

    async def close(self) -> None:
        await self._close_pc()
        for task in self._closing:
            task.cancel()


class HqSession:
    """A participant's signalling socket to HQ, as call.js uses it: join (or resume), offer, wait for the
    answer; keeps what HQ pushes (quality, alerts, state) for tests to look at."""

    def __init__(self, hq_url: str, consultation: str, token: str) -> None:
        self.url = hq_url.replace("http", "ws", 1) + f"/consultations/{consultation}/call/ws"
        self.headers = {"Authorization": f"Bearer {token}"}  # an API token of a user who may join
        self.joined: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []
        self._http: Any = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._joins: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @property
    def slots(self) -> tuple[SlotRole, ...]:
        return tuple(SlotRole(s) for s in self.joined["slots"])

    def ice_servers(self) -> list[RTCIceServer]:
        return [RTCIceServer(s["urls"], s.get("username"), s.get("credential")) for s in self.joined["ice_servers"]]

    async def connect(self, *, resume: bool = False, timeout_s: float = 10.0) -> dict[str, Any]:
        """Open the socket and join; `resume`: as the same participant (after a dropped socket)."""
        import aiohttp

        await self.disconnect()
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, headers=self.headers)
        self._reader = asyncio.create_task(self._read())
        join: dict[str, Any] = {"type": "join"}
        if resume:
            join.update(peer=self.joined["peer"], token=self.joined["token"])
        await self._ws.send_json(join)
        self.joined = await asyncio.wait_for(self._joins.get(), timeout_s)
        return self.joined

    async def _read(self) -> None:
        import aiohttp

        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            doc = json.loads(msg.data)
            self.messages.append(doc)
            if doc["type"] == "joined":
                self._joins.put_nowait(doc)
            elif doc["type"] in ("answer", "error"):
                self._answers.put_nowait(doc)

    async def offer(self, sdp: str, _slots: tuple[SlotRole, ...], timeout_s: float = 20.0) -> str:
        await self._ws.send_json({"type": "offer", "sdp": sdp})
        reply = await asyncio.wait_for(self._answers.get(), timeout_s)
        if reply["type"] == "error":
            raise CallRefused(reply["reason"])
        return str(reply["sdp"])

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def leave(self) -> None:
        await self._ws.send_json({"type": "leave"})

    async def disconnect(self) -> None:
        """Drop the socket without a goodbye (as a browser does when its network goes)."""
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        self._reader = self._ws = self._http = None


class CallRefused(Exception):
    """HQ or the gateway refused the offer; the message is theirs."""
