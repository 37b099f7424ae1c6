"""What the staff screen says about a consultation: queued while offline, sending, received by HQ, escalated,
accepted by the expert, reported, withdrawn."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.consultations import Delivery, describe

OFFLINE, SENDING, DELIVERED = Delivery(True, False), Delivery(True, True), Delivery(False, True)


@pytest.mark.parametrize(("row", "delivery", "state", "text"), [
    ({}, OFFLINE, "queued", "Queued: will be sent when the link to HQ returns"),
    ({}, SENDING, "sending", "Sending to HQ\u2026"),
    ({}, DELIVERED, "received", "Received by HQ: finding an expert"),
    ({"hq_status": "dispatching", "offered": 3}, DELIVERED, "received", "Received by HQ: offered to 3 expert(s)"),
    ({"hq_status": "escalated", "hq_text": "Escalated to round 2"}, DELIVERED, "escalated", "Escalated to round 2"),
    ({"hq_status": "accepted", "expert_name": "Dr. Wang", "expert_title": "Chief physician"}, DELIVERED, "accepted",
     "Accepted by Dr. Wang (Chief physician)"),
    # An emergency started from HQ's console for this clinic has no request in this outbox.
    ({"hq_status": "accepted", "expert_name": "Dr. Wang"}, OFFLINE, "accepted", "Accepted by Dr. Wang"),
    ({"hq_status": "reported", "expert_name": "Dr. Wang", "report_html": "<p>"}, DELIVERED, "reported",
     "Report received from Dr. Wang"),
    ({"hq_status": "cancelled", "cancel_reason": "duplicate"}, DELIVERED, "withdrawn", "Withdrawn by HQ: duplicate"),
])
def test_the_screen_says_where_a_consultation_stands(row: dict[str, Any], delivery: Delivery, state: str,
                                                      text: str) -> None:
    assert describe(row, delivery) == (state, text)
