"""An IP camera for tests: a minimal RTSP/1.0 server (RFC 2326) streaming H.264 and Opus as RTP interleaved on
the RTSP connection (RFC 6184 packetization), from an MPEG-TS file played in a loop or from a live encoder.

Enough of RTSP for FFmpeg's client (OPTIONS, DESCRIBE, SETUP over TCP, PLAY, GET_PARAMETER, TEARDOWN), plus what
tests need to break it: drop every client, stall (connection open, no data), stop and start on the same port,
and announce itself by mDNS (_rtsp._tcp) on loopback. `python -m tests.support.rtsp_camera` runs one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import random
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from gateway.media import h264
from tests.support.synthetic_camera import EncodedUnit, LiveEncoder

log = logging.getLogger(__name__)

RTP_MAX_PAYLOAD = 1400
VIDEO_PT, AUDIO_PT = 96, 97


def load_ts(path: Path) -> list[EncodedUnit]:
    """Every video access unit and Opus packet of an MPEG-TS file, in order."""
    units = []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None or packet.time_base is None:
                continue
            kind = packet.stream.type
            if kind not in ("video", "audio"):
                continue
            units.append(EncodedUnit(kind, bytes(packet), float(packet.pts * packet.time_base),
                                     bool(packet.is_keyframe)))
    return units


def h264_payloads(access_unit: bytes, *, parameter_sets: bool) -> list[bytes]:
    """RTP payloads of one access unit: single NAL unit packets, or FU-A fragments for large units."""
    payloads = []
    for nal in h264.split_nals(access_unit):
        kind = h264.nal_type(nal)
        if kind == h264.NAL_AUD or (not parameter_sets and kind in (h264.NAL_SPS, h264.NAL_PPS)):
            continue
        if len(nal) <= RTP_MAX_PAYLOAD:
            payloads.append(nal)
            continue
        indicator = (nal[0] & 0xE0) | 28
        body = nal[1:]
        for start in range(0, len(body), RTP_MAX_PAYLOAD):
            header = kind | (0x80 if start == 0 else 0) | (0x40 if start + RTP_MAX_PAYLOAD >= len(body) else 0)
            payloads.append(bytes([indicator, header]) + body[start:start + RTP_MAX_PAYLOAD])
    return payloads


class RtpStream:
    def __init__(self, payload_type: int, clock_rate: int, channel: int) -> None:
        self.payload_type, self.clock_rate, self.channel = payload_type, clock_rate, channel
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(15)

    def packets(self, payloads: list[bytes], time_s: float) -> Iterator[bytes]:
        timestamp = int(time_s * self.clock_rate) & 0xFFFFFFFF
        for i, payload in enumerate(payloads):
            marker = 0x80 if i == len(payloads) - 1 else 0
            header = struct.pack("!BBHII", 0x80, marker | self.payload_type, self.seq, timestamp, self.ssrc)
            self.seq = (self.seq + 1) & 0xFFFF
            rtp = header + payload
            yield b"$" + bytes([self.channel]) + struct.pack("!H", len(rtp)) + rtp


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    session: str
    video_channel: int | None = None
    audio_channel: int | None = None
    playing: bool = False


class RtspCamera:
    """`async with RtspCamera(units) as cam:` serves `cam.url`; `units` loop forever (or come live)."""

    def __init__(self, units: list[EncodedUnit] | None = None, *, live: LiveEncoder | None = None,
                 host: str = "127.0.0.1", port: int = 0, path: str = "/stream", parameter_sets: bool = True) -> None:
        if (units is None) == (live is None):
            raise ValueError("give either units (a file's) or a live encoder")
        self.units, self.live = units, live
        self.host, self.port, self.path = host, port, path
        self.parameter_sets = parameter_sets  # False: SPS/PPS only in the SDP, as some cameras do
        self.sessions_started = 0
        self.stalled = False
        self._server: asyncio.Server | None = None
        self._clients: set[_Client] = set()
        self._streamer: asyncio.Task[None] | None = None
        self._sprop = self._find_sprop()
        self._video = RtpStream(VIDEO_PT, 90000, 0)
        self._audio = RtpStream(AUDIO_PT, 48000, 2)

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}{self.path}"

    @property
    def has_audio(self) -> bool:
        return self.units is not None and any(u.kind == "audio" for u in self.units)

    def _find_sprop(self) -> str:
        if self.live is not None:
            # The live encoder's first unit is a keyframe: kept to go out first, and for the SDP.
            self._live_units = self.live.units()
            self._live_first = next(self._live_units)
            nals = h264.split_nals(self._live_first.data)
        else:
            assert self.units is not None
            nals = h264.split_nals(next(u for u in self.units if u.kind == "video" and u.keyframe).data)
        sets = [n for n in nals if h264.nal_type(n) in (h264.NAL_SPS, h264.NAL_PPS)]
        return ",".join(base64.b64encode(n).decode() for n in sets)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._streamer = asyncio.create_task(self._stream())

    async def stop(self) -> None:
        """Stop listening and drop every client (a camera switched off); `start` brings it back."""
        if self._streamer is not None:
            self._streamer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._streamer
        if self._server is not None:
            self._server.close()
        self.drop_clients()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def drop_clients(self) -> None:
        for client in list(self._clients):
            client.writer.transport.abort()
        self._clients.clear()

    async def __aenter__(self) -> RtspCamera:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- RTSP --------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer, f"{random.getrandbits(32):08X}")
        self._clients.add(client)
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":  # RTCP from the client, interleaved: read and ignore
                    header = await reader.readexactly(3)
                    await reader.readexactly(struct.unpack("!H", header[1:])[0])
                    continue
                head = first + await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, url, _version = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                self._answer(client, method, url, headers)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._clients.discard(client)
            writer.close()

    def _answer(self, client: _Client, method: str, url: str, headers: dict[str, str]) -> None:
        cseq = headers.get("cseq", "0")
        extra: dict[str, str] = {}
        body = b""
        status = "200 OK"
        if method == "OPTIONS":
            extra["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN"
        elif method == "DESCRIBE":
            body = self._sdp().encode()
            extra.update({"Content-Type": "application/sdp", "Content-Base": self.url + "/"})
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "TCP" not in transport.upper():
                status = "461 Unsupported Transport"
            else:
                audio = url.rstrip("/").endswith("trackID=1")
                channel = 2 if audio else 0
                if audio:
                    client.audio_channel = channel
                else:
                    client.video_channel = channel
                extra["Transport"] = f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}"
                extra["Session"] = f"{client.session};timeout=60"
        elif method == "PLAY":
            extra.update({"Session": client.session, "Range": "npt=0.000-"})
            client.playing = True
            self.sessions_started += 1
        elif method in ("GET_PARAMETER", "SET_PARAMETER"):
            extra["Session"] = client.session
        elif method == "TEARDOWN":
            client.playing = False
        else:
            status = "405 Method Not Allowed"
        lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", *(f"{k}: {v}" for k, v in extra.items()),
                 f"Content-Length: {len(body)}", "", ""]
        client.writer.write("\r\n".join(lines).encode() + body)

    def _sdp(self) -> str:
        lines = ["v=0", f"o=- 0 0 IN IP4 {self.host}", "s=synthetic camera", "t=0 0", "a=control:*",
                 f"m=video 0 RTP/AVP {VIDEO_PT}", f"a=rtpmap:{VIDEO_PT} H264/90000",
                 f"a=fmtp:{VIDEO_PT} packetization-mode=1;sprop-parameter-sets={self._sprop}",
                 "a=control:trackID=0"]
        if self.has_audio:
            lines += [f"m=audio 0 RTP/AVP {AUDIO_PT}", f"a=rtpmap:{AUDIO_PT} opus/48000/2", "a=control:trackID=1"]
        return "\r\n".join(lines) + "\r\n"

    # ---- media -------------------------------------------------------------------------
    async def _stream(self) -> None:
        if self.live is not None:
            await self._stream_live()
            return
        assert self.units is not None
        duration = self.units[-1].pts_s - self.units[0].pts_s + 1 / 15
        start = time.monotonic()
        lap = 0
        while True:
            for unit in self.units:
                at = lap * duration + unit.pts_s - self.units[0].pts_s
                delay = start + at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._send(unit, at)
            lap += 1

    async def _stream_live(self) -> None:
        queue: asyncio.Queue[EncodedUnit] = asyncio.Queue(maxsize=120)
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def produce() -> None:
            loop.call_soon_threadsafe(queue.put_nowait, self._live_first)
            for unit in self._live_units:
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(queue.put_nowait, unit)

        worker = threading.Thread(target=produce, name="live-camera", daemon=True)
        worker.start()
        try:
            while True:
                unit = await queue.get()
                self._send(unit, unit.pts_s)
        finally:
            stop.set()

    def _send(self, unit: EncodedUnit, at_s: float) -> None:
        if self.stalled:
            return
        playing = [c for c in self._clients if c.playing]
        if not playing:
            return
        if unit.kind == "video":
            frames = list(self._video.packets(h264_payloads(unit.data, parameter_sets=self.parameter_sets), at_s))
        else:
            frames = list(self._audio.packets([unit.data], at_s))
        data = b"".join(frames)
        for client in playing:
            channel = client.video_channel if unit.kind == "video" else client.audio_channel
            if channel is None:
                continue
            if client.writer.transport.get_write_buffer_size() > 4 * 1024 * 1024:
                continue  # a client that stopped reading: drop rather than buffer without bound
            client.writer.write(data)


def announce(name: str, port: int, path: str) -> object:
    """Register the camera as `_rtsp._tcp` on loopback only (never on the machine's real network)."""
    import socket

    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    info = ServiceInfo("_rtsp._tcp.local.", f"{name}._rtsp._tcp.local.", addresses=[socket.inet_aton("127.0.0.1")],
                       port=port, properties={"path": path}, server="synthetic-camera.local.")
    zc.register_service(info)
    return zc


async def _main(args: argparse.Namespace) -> None:
    if args.live:
        width, height = (int(x) for x in args.size.split("x"))
        camera = RtspCamera(live=LiveEncoder(width=width, height=height, fps=args.fps, kbps=args.kbps),
                            port=args.port, path=args.path)
    else:
        camera = RtspCamera(load_ts(args.file), port=args.port, path=args.path)
    async with camera:
        zc = announce(args.mdns_name, camera.port, args.path) if args.mdns_name else None
        print(f"serving {camera.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            if zc is not None:
                zc.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A synthetic RTSP camera for tests and benchmarks.")
    parser.add_argument("--file", type=Path, help="MPEG-TS file to loop")
    parser.add_argument("--live", action="store_true", help="encode stamped frames live instead")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--kbps", type=int, default=2000)
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", default="/stream")
    parser.add_argument("--mdns-name", help="announce as this _rtsp._tcp service on 127.0.0.1")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
