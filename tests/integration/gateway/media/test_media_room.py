"""A call room on real WebRTC over loopback: an RTSP camera relayed without re-encoding to remote participants,
their voices and pictures relayed to the clinic's screen and to each other, a participant re-dialling keeps
their place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.capture import DeviceHealth
from gateway.config import CameraConfig, MediaSection
from gateway.media.camera import Camera
from gateway.media.peer import ice_configuration
from gateway.media.room import CallFull, CallRoom
from gateway.wire import Party, SlotRole
from tests.support.call_client import EXPERT_SLOTS, CallClient, loopback_ice
from tests.support.rtsp_camera import RtspCamera, load_ts
from tests.support.synthetic_camera import write_ts

CLINIC_SLOTS = (SlotRole.CAMERA, SlotRole.SEND_AUDIO, SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO,
                SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO, SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ts(tmp_path_factory.mktemp("media") / "clip.ts", seconds=3)


@contextlib.asynccontextmanager
async def camera_room(clip: Path, media: MediaSection | None = None) -> AsyncIterator[tuple[CallRoom, Camera]]:
    # A short probe: on a busy test machine, a viewer dropped to a lower tier by a scheduling hiccup comes back fast.
    media = media or MediaSection(tier_probe_s=2)
    async def on_state(_health: DeviceHealth, _detail: str) -> None:
        return None
    with loopback_ice():
        async with RtspCamera(load_ts(clip)) as rtsp:
            camera = Camera(CameraConfig(id="room", url=rtsp.url, label="Room camera"), media,
                            DeviceHealth("room", "rtsp", rtsp.url), on_state)
            task = asyncio.create_task(camera.run())
            room = CallRoom("C-1", media, [camera], dead_peer_grace_s=1.0)
            control = asyncio.create_task(room.run())
            try:
                yield room, camera
            finally:
                control.cancel()
                await room.close()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def joiner(room: CallRoom, peer_id: str, name: str, *, local: bool = False):  # type: ignore[no-untyped-def]
    async def signal(sdp: str, slots: tuple[SlotRole, ...]) -> str:
        return await room.join(peer_id, Party(name, "clinic_staff" if local else "expert"), slots, sdp, local=local,
                               ice=ice_configuration((), relay_only=False))
    return signal


async def test_experts_see_the_camera_and_the_clinic_sees_and_hears_the_experts(clip: Path) -> None:
    async with camera_room(clip) as (room, camera):
        experts = [CallClient(EXPERT_SLOTS) for _ in range(3)]
        clinic = CallClient(CLINIC_SLOTS, send_video=False)
        try:
            await clinic.join(joiner(room, "clinic-1", "Clinic screen", local=True))
            for i, expert in enumerate(experts):
                await expert.join(joiner(room, f"expert-{i}", f"Dr {i}"))
            for expert in experts:
                await expert.wait_frames("camera-0", 20)
                await expert.wait_frames("clinic-audio", 50)  # the clinic screen's microphone
                await expert.wait_frames("party-video-0", 5)  # another expert's camera
                await expert.wait_frames("party-audio-0", 25)
            for i in range(3):
                await clinic.wait_frames(f"party-video-{i}", 10)
                await clinic.wait_frames(f"party-audio-{i}", 25)
            # Everyone's first camera slot has the camera, on whatever tier their link takes; the clinic's LAN
            # screen always gets the camera's own stream.
            camera_slots = [s for p in room.peers.values() for s in p.slots_of(SlotRole.CAMERA) if s.track]
            assert len(camera_slots) == 4 and camera.main.viewers + camera.low.viewers >= 1
            assert room.peers["clinic-1"].slots_of(SlotRole.CAMERA)[0].track.target is camera.main  # type: ignore[union-attr]
        finally:
            for c in [clinic, *experts]:
                await c.close()


async def test_a_participant_who_redials_keeps_their_place_and_a_full_call_refuses_more(clip: Path) -> None:
    async with camera_room(clip, MediaSection(max_remote_parties=2, tier_probe_s=2)) as (room, camera):
        first, second, third = CallClient(EXPERT_SLOTS), CallClient(EXPERT_SLOTS), CallClient(EXPERT_SLOTS)
        clinic = CallClient(CLINIC_SLOTS, send_video=False)
        try:
            await clinic.join(joiner(room, "clinic-1", "Clinic screen", local=True))
            await first.join(joiner(room, "expert-a", "Dr A"))
            await second.join(joiner(room, "expert-b", "Dr B"))
            with pytest.raises(CallFull, match="2 remote participants"):
                await third.join(joiner(room, "expert-c", "Dr C"))
            assert third.pc is not None
            await clinic.wait_frames("party-audio-0", 25)
            # Dr A's network changes: a new connection under the same participant id, no re-join.
            await first.join(joiner(room, "expert-a", "Dr A"))
            assert first.connections == 2 and list(room.peers) == ["clinic-1", "expert-a", "expert-b"]
            await first.wait_frames("camera-0", 15)
            await clinic.wait_frames("party-audio-0", 25)  # Dr A is still in the clinic's first party slot
            await clinic.wait_frames("party-video-1", 5)  # and Dr B in the second
            state = room.state_for(room.peers["clinic-1"])
            labels = {s.slot: s.label for s in state.slots}
            assert labels["party-audio-0"] == "Dr A" and labels["party-video-1"] == "Dr B"
            assert camera.main.viewers + camera.low.viewers <= 3
            await room.leave("expert-b")
            assert list(room.peers) == ["clinic-1", "expert-a"]
        finally:
            for c in (clinic, first, second, third):
                await c.close()


async def test_many_joins_and_leaves_leave_nothing_behind(clip: Path) -> None:
    import gc

    from aiortc import RTCPeerConnection

    from gateway.media.relay import RelayedTrack

    def alive(kind: type) -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, kind))

    async with camera_room(clip) as (room, camera):
        baseline_tasks = 0
        for cycle in range(12):
            clients = [CallClient(EXPERT_SLOTS) for _ in range(2)]
            for i, client in enumerate(clients):
                await client.join(joiner(room, f"churn-{cycle}-{i}", f"Dr {i}"))
            await clients[0].wait_frames("camera-0", 3)
            for i, client in enumerate(clients):
                await client.close()
                await room.leave(f"churn-{cycle}-{i}")
            if cycle == 0:
                await asyncio.sleep(1.0)
                baseline_tasks = len(asyncio.all_tasks())  # the camera's own tasks, once it runs
        await asyncio.sleep(1.0)  # connections finish closing
        assert camera.main.viewers == 0 and camera.audio.viewers == 0 and not room.peers
        assert alive(RTCPeerConnection) == 0
        assert alive(RelayedTrack) == 0
        leftover = [t.get_coro().__qualname__ for t in asyncio.all_tasks()]
        assert len(leftover) <= baseline_tasks, leftover


async def test_a_participant_gone_without_a_goodbye_is_dropped(clip: Path) -> None:
    async with camera_room(clip) as (room, camera):
        client = CallClient(EXPERT_SLOTS)
        await client.join(joiner(room, "vanishing", "Dr Gone"))
        await client.wait_frames("camera-0", 3)
        await client.close()  # the browser's tab closed: no leave, no bye from HQ yet
        deadline = asyncio.get_running_loop().time() + 15
        while room.peers:
            assert asyncio.get_running_loop().time() < deadline, {p: s.state for p, s in room.peers.items()}
            await asyncio.sleep(0.2)
        assert camera.main.viewers == 0
