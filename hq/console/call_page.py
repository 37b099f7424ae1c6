"""HTML of a consultation's call page: the clinic's cameras and voice, the other participants, this browser's own
camera, live call-quality figures and alerts, the call's recordings. Every value escaped.

Rendering only: the data comes from `hq.calls`; the call itself is made by static/call.js.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway import wire
from hq.console.html import e, page

QUALITY_COLUMNS = (("rtt_ms", "RTT ms"), ("loss_pct", "loss %"), ("jitter_ms", "jitter ms"), ("fps", "fps"),
                   ("kbps", "kbps"), ("tier", "tier"))




def _tile(slot: str, kind: str, caption: str) -> str:
    return (f"<figure class=\"tile {e(kind)}\" data-slot=\"{e(slot)}\"><video autoplay playsinline muted></video>"
            f"<figcaption>{e(caption)}</figcaption></figure>")


def quality_row(sample: Mapping[str, Any]) -> str:
    cells = "".join(f"<td data-figure=\"{e(key)}\">{e(_figure(sample.get(key)))}</td>" for key, _ in QUALITY_COLUMNS)
    return (f"<tr data-peer=\"{e(sample['peer'])}\" data-stream=\"{e(sample['stream'])}\">"
            f"<td>{e(sample.get('name') or sample['peer'])}</td><td>{e(sample['stream'])}</td>"
            f"<td>{e(sample.get('dir', ''))}</td>{cells}</tr>")


def _figure(value: Any) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def alert_item(alert: Mapping[str, Any]) -> str:
    state = "open" if alert.get("ended") is None else "closed"
    return (f"<li class=\"call-alert {state}\" data-alert=\"{e(alert['id'])}\" data-kind=\"{e(alert['kind'])}\">"
            f"<time>{e(alert['started'])}</time> <strong>{e(alert['kind'])}</strong> "
            f"{e(alert['peer'])} {e(alert['stream'] or 'connection')}: {e(_figure(alert['value']))} "
            f"(threshold {e(_figure(alert['threshold']))})</li>")


def recording_item(rec: Mapping[str, Any]) -> str:
    head = (f"<strong>{e(rec['started'])}</strong> \u00b7 {e(rec['duration_s'])} s \u00b7 "
            f"<span class=\"state\">{e(rec['state'])}</span>")
    if rec["url"]:
        body = f"<video controls preload=\"metadata\" src=\"{e(rec['url'])}\"></video>"
    else:
        body = f"<progress max=\"{e(rec['size_bytes'])}\" value=\"{e(rec['received_bytes'])}\"></progress>"
    return f"<li class=\"recording\" data-recording=\"{e(rec['recording_id'])}\">{head} {body}</li>"


def call_page_html(public_id: str, summary: Mapping[str, Any], recordings: Sequence[Mapping[str, Any]],
                   slots: Sequence[str], *, actor: Any = None) -> str:
    names = wire.slot_names(slots)
    cameras = "".join(_tile(n, "camera", "camera") for r, n in zip(slots, names, strict=True) if r == "camera")
    parties = "".join(_tile(n, "party", "waiting") for r, n in zip(slots, names, strict=True) if r == "party-video")
    audio = "".join(f"<audio data-slot=\"{e(n)}\" autoplay></audio>" for r, n in zip(slots, names, strict=True)
                    if r in ("clinic-audio", "party-audio"))
    names_by_peer = {p["peer"]: p["name"] for p in summary.get("participants", [])}
    rows = "".join(quality_row({**s, "name": names_by_peer.get(s["peer"])}) for s in summary.get("quality", []))
    columns = "".join(f"<th>{e(label)}</th>" for _, label in QUALITY_COLUMNS)
    body = (
        f"<link rel=\"stylesheet\" href=\"/static/call.css\">"
        f"<h1>Consultation <span class=\"consultation-id\">{e(public_id)}</span> \u00b7 call</h1>"
        f"<p class=\"call-status\">clinic gateway <strong id=\"gateway-state\">"
        f"{'online' if summary.get('gateway_online') else 'offline'}</strong> \u00b7 connection "
        f"<strong id=\"connection\">new</strong> \u00b7 recording <strong id=\"recording\">off</strong> "
        f"<span id=\"call-note\"></span></p>"
        f"<div class=\"call-grid\"><section class=\"clinic\"><h2>Clinic</h2><div class=\"tiles\">{cameras}</div>"
        f"</section><section class=\"parties\"><h2>Other participants</h2><div class=\"tiles\">{parties}</div>"
        f"</section><section class=\"self\"><h2>You</h2><video id=\"self-view\" autoplay playsinline muted></video>"
        f"<p><button id=\"mute\" type=\"button\">Mute</button> <button id=\"leave\" type=\"button\">Leave</button> "
        f"<button id=\"sound\" type=\"button\" hidden>Enable sound</button></p></section></div>{audio}"
        f"<h2>Call quality</h2><table id=\"quality\"><thead><tr><th>participant</th><th>stream</th><th>dir</th>"
        f"{columns}</tr></thead><tbody>{rows}</tbody></table>"
        f"<h2>Alerts</h2><ul id=\"call-alerts\">{''.join(alert_item(a) for a in summary.get('alerts', []))}</ul>"
        f"<h2>Recordings</h2><ul id=\"recordings\">{''.join(recording_item(r) for r in recordings)}</ul>"
    )
    return page(f"Call {public_id}", body, actor=actor,
                scripts=("/static/live_socket.js", "/static/console.js", "/static/call.js"),
                page_data={"view": "call", "consultation": public_id, "slots": list(slots),
                           "ws": f"/consultations/{public_id}/call/ws"})
