"""HTML of the patient pages: search and registration, a patient's timeline with live vitals, and the merge
screen for duplicates. Every value escaped; the data comes from `hq.console.patients` as JSON-shaped dicts.

Markup only; no queries, no rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from hq.console import html
from hq.console.html import e, format_value, metric_label, unit_label

SEX_LABELS = {"female": "female", "male": "male", "other": "other", "unknown": "unknown"}
DOT = " \u00b7 "
DASH = "\u2014"
SCRIPTS = ("/static/live_socket.js", "/static/console.js", "/static/records.js")


def _csrf(actor: Any) -> str:
    return f"<input type=\"hidden\" name=\"csrf_token\" value=\"{e(actor.csrf_token or '')}\">"


def _error(message: str | None) -> str:
    return f"<p class=\"error\" role=\"alert\">{e(message)}</p>" if message else ""


def masked_national_id(value: str | None) -> str:
    """Lists show the first 6 and last 4 characters only (enough to tell two people apart)."""
    if not value:
        return ""
    return value if len(value) <= 10 else value[:6] + "\u2022" * (len(value) - 10) + value[-4:]


def identifiers_text(identifiers: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{i.get('clinic') or i['clinic_id']} {i['mrn']}" for i in identifiers)


# ---- search and registration -----------------------------------------------------------------------
def search_page(actor: Any, query: str, results: Sequence[Mapping[str, Any]] | None, *, may_register: bool,
                may_merge: bool, error: str | None = None, form: Mapping[str, str] | None = None,
                clinic_choice: Sequence[str] = ()) -> str:
    rows = "".join(
        f"<tr data-patient-id=\"{r['patient_id']}\"><td><a href=\"/patients/{r['patient_id']}\">{e(r['name'])}</a>"
        + (f"<br><small>{e(r['alt_name'])}</small>" if r.get("alt_name") else "") + "</td>"
        f"<td>{e(SEX_LABELS.get(r.get('sex') or '', ''))}</td><td>{e(r.get('birth_date') or '')}</td>"
        f"<td class=\"nid\">{e(masked_national_id(r.get('national_id')))}</td>"
        f"<td class=\"mrns\">{e(identifiers_text(r['identifiers']))}</td>"
        f"<td><small>{e(r.get('matched') or '')}</small></td></tr>" for r in results or ())
    if results is None:
        listing = ""
    elif not results:
        listing = f"<p class=\"empty\" id=\"no-results\">No patient matches \u201c{e(query)}\u201d.</p>"
    else:
        listing = ("<table class=\"list\" id=\"results\"><thead><tr><th>Name</th><th>Sex</th><th>Born</th>"
                   "<th>National id</th><th>Record numbers</th><th>Matched</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table>")
    body = (
        "<h1>Patients</h1>"
        "<form method=\"get\" action=\"/patients\" class=\"inline search\" id=\"patient-search\" role=\"search\">"
        f"<label>Name, national id or record number <input name=\"q\" value=\"{e(query)}\" autofocus "
        "placeholder=\"张伟, zhang wei, 110105\u2026, A-0012\" autocomplete=\"off\"></label>"
        "<button type=\"submit\">Search</button></form>"
        + ("<p><a href=\"/patients/merge\" id=\"merge-link\">Possible duplicates and merging</a></p>"
           if may_merge else "")
        + listing
        + (register_form(actor, form or {}, error, clinic_choice) if may_register else _error(error)))
    return html.page("Patients", body, page_data={"view": "patients"}, actor=actor, current="/patients",
                     scripts=())


_REGISTER_FIELDS = (("name", "Name (as shown)"), ("family_name", "Family name"), ("given_name", "Given name"),
                    ("alt_name", "Name in another script"), ("national_id", "National id"),
                    ("birth_date", "Birth date (YYYY-MM-DD)"), ("phone", "Phone"), ("mrn", "Clinic record number"))


def register_form(actor: Any, form: Mapping[str, str], error: str | None, clinic_choice: Sequence[str]) -> str:
    fields = "".join(f"<label>{e(label)} <input name=\"{name}\" value=\"{e(form.get(name, ''))}\"></label>"
                     for name, label in _REGISTER_FIELDS)
    sex = "".join(f"<option value=\"{v}\"{' selected' if form.get('sex') == v else ''}>{v or DASH}</option>"
                  for v in ("", "female", "male", "other", "unknown"))
    clinics = "".join(f"<option value=\"{e(c)}\"{' selected' if form.get('clinic_id') == c else ''}>{e(c)}</option>"
                      for c in clinic_choice)
    return ("<h2>Register a patient</h2>" + _error(error) +
            "<form method=\"post\" action=\"/patients\" class=\"inline\" id=\"register\">" + _csrf(actor) + fields +
            f"<label>Sex <select name=\"sex\">{sex}</select></label>"
            f"<label>Clinic <select name=\"clinic_id\"><option value=\"\">{DASH}</option>{clinics}</select></label>"
            "<button type=\"submit\">Register</button></form>"
            "<p class=\"hint\">A known national id or clinic record number finds the existing record; facts that "
            "disagree are never merged silently but listed as a possible duplicate.</p>")


# ---- the timeline --------------------------------------------------------------------------------
def _header(p: Mapping[str, Any]) -> str:
    facts = [f"<span class=\"sex\">{e(SEX_LABELS.get(p.get('sex') or '', ''))}</span>" if p.get("sex") else "",
             f"born <time class=\"born\">{e(p['birth_date'])}</time>" if p.get("birth_date") else "",
             f"national id <span class=\"nid\">{e(p['national_id'])}</span>" if p.get("national_id") else "",
             f"phone {e(p['phone'])}" if p.get("phone") else ""]
    numbers = "".join(f"<li data-clinic=\"{e(i['clinic_id'])}\" data-mrn=\"{e(i['mrn'])}\">{e(i['clinic'])} "
                      f"<strong>{e(i['mrn'])}</strong></li>" for i in p["identifiers"])
    provisional = ("<p class=\"notice\" id=\"provisional\">This record was made from a device's readings: its "
                   "demographics are not known yet. A check-in at the clinic fills them in.</p>"
                   if p.get("origin") == "device" else "")
    alt = f" <small class=\"alt-name\">{e(p['alt_name'])}</small>" if p.get("alt_name") else ""
    shown = DOT.join(f for f in facts if f)
    return (f"<h1><span id=\"patient-name\">{e(p['name'])}</span>{alt}</h1>"
            f"<p class=\"facts\">{shown}</p>{provisional}"
            f"<ul class=\"identifiers\" id=\"identifiers\">{numbers}</ul>")


def _vitals_block(key: Mapping[str, Any], vitals: Sequence[Mapping[str, Any]]) -> str:
    tiles = "".join(html.tile(v) for v in vitals)
    return (f"<div class=\"patient\" data-patient=\"{e(key['mrn'])}\" data-clinic=\"{e(key['clinic_id'])}\">"
            f"<div class=\"patient-key\">{e(key['clinic'])} {e(key['mrn'])}</div>"
            f"<div class=\"tiles\">{tiles}</div></div>")


def _entry(item: Mapping[str, Any]) -> str:
    kind = item["type"]
    time = f"<time datetime=\"{e(item['time'])}\">{e((item['time'] or '')[11:19])}</time>"
    if kind == "visit":
        reason = ": " + e(item["reason"]) if item.get("reason") else ""
        text = f"Visit at <strong>{e(item['clinic_id'])}</strong>{reason}"
    elif kind == "consultation":
        reports = "".join(f" <span class=\"report\">report v{r['version']}</span>" for r in item["reports"])
        who = f" with {e(item['expert'])}" if item.get("expert") else ""
        dept = f" ({e(item['department'])})" if item.get("department") else ""
        complaint = f"<br><small>{e(item['chief_complaint'])}</small>" if item.get("chief_complaint") else ""
        text = (f"<a href=\"{e(item['link'])}\">{e(item['kind'].title())} consultation</a>{dept}{who}{DOT}"
                f"{e(item['status'])}{reports}{complaint}")
    elif kind == "imaging":
        tags = item.get("tags") or {}
        described = DOT.join(e(v) for v in (item.get("modality"), item.get("body_part"),
                                                  item.get("study_description"), item.get("study_date")) if v)
        keys = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in tags.items())
        text = (f"Imaging <strong class=\"modality\">{described or e(item.get('filename') or 'DICOM')}</strong> "
                f"<a class=\"download\" href=\"{e(item['download'])}\">original ({item['size_bytes']:,} bytes)</a>"
                f"<details><summary>DICOM tags</summary><dl class=\"tags\">{keys}</dl></details>")
    elif kind == "alarm":
        alarm = item.get("alarm") or {}
        text = (f"<strong>Alarm</strong> {e(metric_label(item['metric']))} "
                f"{e(alarm.get('text') or alarm.get('event') or '')} <small>{e(alarm.get('priority') or '')}</small>")
    elif kind == "gap":
        text = f"<strong>Data gap</strong>: {e((item.get('gap') or {}).get('text') or '')}"
    else:
        text = e(kind)
    return f"<li class=\"entry {e(kind)}\" data-type=\"{e(kind)}\">{time} {text}</li>"


def _day(day: str, summary: Mapping[str, Any] | None, entries: Sequence[Mapping[str, Any]]) -> str:
    table = ""
    if summary and summary["metrics"]:
        rows = "".join(
            f"<tr data-metric=\"{e(m['metric'])}\"><td>{e(metric_label(m['metric']))}</td><td>{m['count']:,}</td>"
            f"<td>{e(format_value(m['min']))}</td><td>{e(format_value(m['mean']))}</td>"
            f"<td>{e(format_value(m['max']))}</td><td>{e(unit_label(m['unit']))}</td></tr>" for m in summary["metrics"])
        table = ("<table class=\"vitals-day\"><thead><tr><th>Vital sign</th><th>Readings</th><th>Min</th><th>Mean</th>"
                 f"<th>Max</th><th></th></tr></thead><tbody>{rows}</tbody></table>")
    counts = ""
    if summary and (summary["alarms"] or summary["gaps"]):
        span = f"{DOT}monitored {e(summary['first'][11:16])}\u2013{e(summary['last'][11:16])} UTC"
        counts = f"<p class=\"day-counts\">{summary['alarms']} alarm(s), {summary['gaps']} data gap(s){span}</p>"
    items = "".join(_entry(x) for x in entries)
    return (f"<section class=\"day\" data-day=\"{e(day)}\"><h3>{e(day)}</h3>{table}{counts}"
            f"<ul class=\"entries\">{items}</ul></section>")


def timeline_page(actor: Any, patient: Mapping[str, Any], timeline: Mapping[str, Any],
                  vitals: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]], *,
                  trend_since: str, live: bool, earlier: str, may_upload: bool, may_merge: bool,
                  merges: Sequence[Mapping[str, Any]], merged_from: int | None, upload_limit: int) -> str:
    by_day: dict[str, list[Mapping[str, Any]]] = {}
    for item in timeline["entries"]:
        by_day.setdefault((item["time"] or "")[:10], []).append(item)
    summaries = {d["day"]: d for d in timeline["vitals_by_day"]}
    days = sorted(set(by_day) | set(summaries), reverse=True)
    sections = "".join(_day(d, summaries.get(d), by_day.get(d, [])) for d in days) or \
        "<p class=\"empty\">Nothing in this period.</p>"
    notice = (f"<p class=\"notice\" id=\"merged-notice\">Record {merged_from} was merged into this one.</p>"
              if merged_from else "")
    merge_list = "".join(
        f"<li data-merge=\"{m['id']}\">{e(m['merged_name'])} (record {m['merged_id']}) merged in {e(m['at'])}"
        + (f"{DOT}undone {e(m['undone'])}" if m.get("undone") else "")
        + (f"<form method=\"post\" action=\"/patients/merges/{m['id']}/undo\" class=\"inline\">{_csrf(actor)}"
           "<button type=\"submit\">Undo</button></form>" if may_merge and not m.get("undone")
           and m["survivor_id"] == patient["patient_id"] else "") + "</li>" for m in merges)
    upload = (
        f"<form id=\"imaging-upload\" class=\"inline\" method=\"post\" enctype=\"multipart/form-data\" "
        f"action=\"/api/v1/patients/{patient['patient_id']}/imaging\" data-max-bytes=\"{upload_limit}\">"
        "<label>DICOM file <input type=\"file\" name=\"file\" accept=\".dcm,application/dicom\" required></label>"
        "<button type=\"submit\">Upload</button><span class=\"upload-state\" role=\"status\"></span></form>"
        if may_upload else "")
    blocks = "".join(_vitals_block(key, v) for key, v in vitals)
    live_section = (f"<h2>Live vitals</h2><div id=\"tiles\" class=\"vitals\">{blocks}</div>"
                    "<h2>Alarms</h2><ul class=\"alarms\" id=\"alarms\"></ul>"
                    "<h2>Data gaps</h2><ul class=\"gaps\" id=\"gaps\"></ul>"
                    "<h2>Trends</h2><div class=\"charts\" id=\"charts\">"
                    + "".join(html.chart(m) for m in sorted({v["metric"] for _, vs in vitals for v in vs}))
                    + "</div>") if live else (f"<h2>Latest vitals</h2><div id=\"tiles\" class=\"vitals\">{blocks}"
                                              "</div>")
    body = (
        notice + _header(patient) + live_section +
        f"<h2>Timeline <small>{e(timeline['since'][:10])} \u2013 {e(timeline['until'][:10])}</small></h2>"
        f"<p class=\"recordings\">Recordings: {e(timeline['recordings'])}"
        + (f"{DOT}{timeline['pending_readings']:,} recent readings not summarised yet"
           if timeline["pending_readings"] else "") + "</p>"
        + upload + f"<div id=\"timeline\">{sections}</div>"
        + f"<p><a href=\"{e(earlier)}\" id=\"earlier\">Earlier</a>{DOT}"
          f"<a href=\"/api/v1/patients/{patient['patient_id']}/timeline\">as JSON</a>{DOT}"
          f"<a href=\"/api/v1/fhir/Patient/{patient['patient_id']}\">FHIR</a></p>"
        + (f"<h2>Merges</h2><ul class=\"merges\">{merge_list}</ul>" if merges else ""))
    keys = [{"clinic_id": key["clinic_id"], "patient_id": key["mrn"]} for key, _ in vitals]
    return html.page(patient["name"], body, actor=actor, current="/patients", scripts=SCRIPTS, page_data={
        "view": "patient" if live else "patient-static", "patient_id": keys[0]["patient_id"] if keys else "",
        "patient_keys": keys, "record_id": patient["patient_id"], "trend_since": trend_since})


# ---- merging ---------------------------------------------------------------------------------------
def _side(p: Mapping[str, Any], counts: Mapping[str, int]) -> str:
    facts = "".join(f"<dt>{e(label)}</dt><dd>{e(p.get(key) or DASH)}</dd>" for key, label in (
        ("name", "Name"), ("alt_name", "Other script"), ("sex", "Sex"), ("birth_date", "Born"),
        ("national_id", "National id"), ("phone", "Phone"), ("origin", "Made by")))
    moved = "".join(f"<dt>{e(k.replace('_', ' '))}</dt><dd>{v}</dd>" for k, v in counts.items())
    return (f"<div class=\"side\" data-patient-id=\"{p['patient_id']}\"><h3><a href=\"/patients/{p['patient_id']}\">"
            f"Record {p['patient_id']}</a></h3><dl>{facts}<dt>Record numbers</dt>"
            f"<dd>{e(identifiers_text(p['identifiers']))}</dd>{moved}</dl></div>")


def merge_page(actor: Any, candidates: Sequence[Mapping[str, Any]],
               pair: tuple[Mapping[str, Any], Mapping[str, int], Mapping[str, Any], Mapping[str, int]] | None,
               error: str | None = None) -> str:
    rows = "".join(
        f"<tr data-duplicate=\"{c['id']}\"><td>{e(c['patient_name'])} ({c['patient_id']})</td>"
        f"<td>{e(c['other_name'])} ({c['other_id']})</td><td>{e(c['reason'])}</td><td>{e(c['source'])}</td>"
        f"<td><a href=\"/patients/merge?{urlencode({'survivor': c['patient_id'], 'merged': c['other_id']})}\">"
        "Compare</a> <form method=\"post\" class=\"inline\" "
        f"action=\"/patients/duplicates/{c['id']}/dismiss\">{_csrf(actor)}<button type=\"submit\">Not the same"
        "</button></form></td></tr>" for c in candidates)
    listing = ("<table class=\"list\" id=\"duplicates\"><thead><tr><th>Record</th><th>Other record</th><th>Why</th>"
               f"<th>Found by</th><th></th></tr></thead><tbody>{rows}</tbody></table>" if candidates
               else "<p class=\"empty\">No open duplicate candidates.</p>")
    compare = ""
    if pair is not None:
        survivor, s_counts, merged, m_counts = pair
        swap = urlencode({"survivor": merged["patient_id"], "merged": survivor["patient_id"]})
        compare = (
            "<h2>Merge</h2><div class=\"compare\">" + _side(survivor, s_counts) + _side(merged, m_counts) + "</div>"
            f"<form method=\"post\" action=\"/patients/merge\" id=\"merge-form\">{_csrf(actor)}"
            f"<input type=\"hidden\" name=\"survivor_id\" value=\"{survivor['patient_id']}\">"
            f"<input type=\"hidden\" name=\"merged_id\" value=\"{merged['patient_id']}\">"
            "<label>Why they are one person <input name=\"reason\" required></label>"
            f"<button type=\"submit\">Merge record {merged['patient_id']} into record {survivor['patient_id']}"
            "</button></form><p class=\"hint\">Record numbers (and the readings that carry them), visits, imaging, "
            "consultations and appointments move to the first record; the second keeps pointing at it. The merge "
            "is recorded and can be undone.</p>"
            f"<p><a href=\"/patients/merge?{swap}\">Keep the other record instead</a></p>")
    body = (
        "<h1>Duplicates</h1>" + _error(error) + compare + "<h2>Possible duplicates</h2>" + listing +
        "<h2>Compare two records</h2><form method=\"get\" action=\"/patients/merge\" class=\"inline\">"
        "<label>Keep record <input name=\"survivor\" inputmode=\"numeric\" required></label>"
        "<label>Merge record <input name=\"merged\" inputmode=\"numeric\" required></label>"
        "<button type=\"submit\">Compare</button></form>")
    return html.page("Duplicates", body, page_data={"view": "merge"}, actor=actor, current="/patients", scripts=())
