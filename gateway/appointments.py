"""The clinic's appointments as this gateway knows them: folded from HQ's appointment notices in its inbox
(confirmed, moved, cancelled, reminded ...), so the staff screen shows them with HQ unreachable.

The fold is pure; `register` makes the inbox check each notice (a malformed one is answered "rejected" with
the reason, which HQ logs). Nothing here talks to HQ: confirmations go back as the inbox's receipts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gateway import appointment_wire as aw
from gateway.inbox import Handled
from gateway.wire import Notice, WireError

if TYPE_CHECKING:
    from gateway.inbox import Inbox, StoredNotice

ENDED_SHOWN_MS = 3_600_000  # an appointment stays on the screen an hour after its end


@dataclass(frozen=True, slots=True)
class ClinicAppointment:
    notice: aw.AppointmentNotice  # the latest notice about it
    received_ms: int  # when that one arrived
    reminded_ms: int | None = None

    @property
    def appointment_id(self) -> int:
        return self.notice.appointment_id


def fold(notices: Iterable[StoredNotice]) -> dict[int, ClinicAppointment]:
    """Each appointment's latest state from its notices, taken in the order HQ sent them (notice id)."""
    found: dict[int, ClinicAppointment] = {}
    for stored in sorted(notices, key=lambda n: n.id):
        if stored.kind not in aw.NOTICE_KINDS:
            continue
        try:
            notice = aw.AppointmentNotice.from_body(stored.kind, stored.body)
        except WireError:
            continue  # answered "rejected" when it arrived; nothing to show
        known = found.get(notice.appointment_id)
        if stored.kind == aw.NOTICE_REMINDER:
            base = known or ClinicAppointment(notice, stored.received_ms)
            # A reminder repeats what is known; it changes only that the staff were reminded.
            found[notice.appointment_id] = replace(base, notice=notice if known is None else known.notice,
                                                   reminded_ms=stored.received_ms)
            continue
        reminded = None if known is None or stored.kind == aw.NOTICE_RESCHEDULED else known.reminded_ms
        found[notice.appointment_id] = ClinicAppointment(notice, stored.received_ms, reminded)
    return found


def upcoming(appointments: dict[int, ClinicAppointment], now_ms: int) -> list[ClinicAppointment]:
    """Appointments not over (an hour's grace), soonest first; cancelled and rejected ones too, so the staff
    see what changed."""
    return sorted((a for a in appointments.values() if a.notice.end_ms + ENDED_SHOWN_MS > now_ms),
                  key=lambda a: (a.notice.start_ms, a.appointment_id))


async def check_notice(notice: Notice) -> Handled:
    try:
        aw.AppointmentNotice.from_body(notice.kind, notice.body)
    except WireError as exc:
        return Handled("rejected", str(exc))
    return Handled("applied")


def register(inbox: Inbox) -> None:
    for kind in aw.NOTICE_KINDS:
        inbox.register(kind, check_notice)
