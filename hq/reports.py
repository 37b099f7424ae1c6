"""The consultation report, rendered from plain data as a standalone HTML document (for the console and the
clinic's screen) and as a PDF (fpdf2 with an embedded CJK font, so Chinese names and advice print).

Rendering only: what goes into a report is gathered by `hq.consultations`; nothing here reads the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from hq.advice import ROUTES, frequency_label

DEFAULT_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
FONT_FAMILY = "report"


class ReportFontError(RuntimeError):
    """The configured font cannot be used for the PDF: the message names the file and what to install."""


@dataclass(frozen=True, slots=True)
class ReportData:
    public_id: str
    version: int
    kind: str
    clinic: str
    created_ms: int
    requested_ms: int
    expert_name: str
    expert_title: str = ""
    expert_hospital: str = ""
    department: str = ""
    accepted_ms: int | None = None
    patient_name: str | None = None
    patient_mrn: str | None = None
    patient_sex: str | None = None
    patient_birth_date: str | None = None
    chief_complaint: str | None = None
    preliminary_diagnosis: str | None = None
    question: str | None = None
    opinion: str | None = None
    vitals: Sequence[dict[str, Any]] = field(default_factory=tuple)
    advice: Sequence[dict[str, Any]] = field(default_factory=tuple)  # {"kind", "body"} as hq.advice made them


@dataclass(frozen=True, slots=True)
class RenderedReport:
    html: str
    pdf: bytes
    sha256: str  # of the PDF: the document of record


def when(ms: int | None) -> str:
    if ms is None:
        return "\u2014"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _by_kind(data: ReportData, kind: str) -> list[dict[str, Any]]:
    return [dict(item["body"]) for item in data.advice if item["kind"] == kind]


def _drug_line(d: dict[str, Any]) -> list[str]:
    return [d["name"], d["dose"], ROUTES.get(d["route"], d["route"]), frequency_label(d["frequency"]),
            d["duration"]]


def _vital_value(v: dict[str, Any]) -> str:
    value = v.get("value")
    shown = "\u2014" if value is None else (f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}")
    return f"{shown} {v.get('unit') or ''}".strip()


def _facts(data: ReportData) -> list[tuple[str, str]]:
    patient = data.patient_name or "(not identified)"
    if data.patient_mrn:
        patient += f" \u00b7 MRN {data.patient_mrn}"
    extra = ", ".join(x for x in (data.patient_sex, data.patient_birth_date) if x)
    return [
        ("Patient", patient + (f" ({extra})" if extra else "")),
        ("Clinic", data.clinic),
        ("Consultation", f"{data.kind} \u00b7 {data.public_id}"),
        ("Requested", when(data.requested_ms)),
        ("Accepted", when(data.accepted_ms)),
        ("Expert", ", ".join(x for x in (data.expert_name, data.expert_title, data.department, data.expert_hospital)
                             if x)),
    ]


# ---- HTML -------------------------------------------------------------------------------------
CSS = ("body{font-family:system-ui,'Noto Sans CJK SC','WenQuanYi Micro Hei',sans-serif;margin:1.5rem;color:#111}"
       "h1{font-size:1.4rem;margin:0 0 .5rem}h2{font-size:1.1rem;margin:1.2rem 0 .4rem;border-bottom:1px solid #ccc}"
       "table{border-collapse:collapse}td,th{padding:.2rem .6rem;border:1px solid #ddd;text-align:left}"
       "dt{font-weight:600}dd{margin:0 0 .4rem}.sig{margin-top:1.5rem;font-style:italic}")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], css_class: str) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class=\"{css_class}\"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _note(item: dict[str, Any]) -> str:
    return f" \u2014 {_e(item['note'])}" if item.get("note") else ""


def render_html(data: ReportData) -> str:
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _facts(data))
    parts = [f"<h1>Consultation report</h1><p>Version {data.version} \u00b7 issued {_e(when(data.created_ms))}</p>"
             f"<dl class=\"facts\">{facts}</dl>"]
    case = [(label, text) for label, text in (("Chief complaint", data.chief_complaint),
                                              ("Preliminary diagnosis", data.preliminary_diagnosis),
                                              ("Question", data.question)) if text]
    if case:
        parts.append("<h2>Case</h2><dl class=\"case\">" + "".join(
            f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in case) + "</dl>")
    if data.vitals:
        parts.append("<h2>Vitals at the request</h2>" + _html_table(
            ("Reading", "Value", "Time", "Source"),
            [(v["metric"], _vital_value(v), when(v.get("time_ms")), v.get("source") or v.get("device_id") or "")
             for v in data.vitals], "vitals"))
    diagnoses = _by_kind(data, "diagnosis")
    if diagnoses:
        parts.append("<h2>Diagnoses (ICD-10)</h2><ul class=\"diagnoses\">" + "".join(
            f"<li><strong>{_e(d['code'])}</strong> {_e(d['title'])} <small>({_e(d['certainty'])})</small>"
            f"{_note(d)}</li>" for d in diagnoses) + "</ul>")
    drugs = _by_kind(data, "drug")
    if drugs:
        parts.append("<h2>Medication</h2>" + _html_table(
            ("Drug", "Dose", "Route", "Frequency", "Duration"), [_drug_line(d) for d in drugs], "drugs"))
    for proc in _by_kind(data, "procedure"):
        parts.append(f"<h2>Procedure: {_e(proc['name'])}</h2><ol class=\"steps\">"
                     + "".join(f"<li>{_e(s)}</li>" for s in proc["steps"]) + "</ol>")
    notes = [n["text"] for n in _by_kind(data, "note")]
    if data.opinion or notes:
        parts.append("<h2>Opinion</h2>" + "".join(f"<p>{_e(t)}</p>" for t in [data.opinion, *notes] if t))
    parts.append(f"<p class=\"sig\">{_e(data.expert_name)}, {_e(when(data.created_ms))}</p>")
    return ("<!doctype html>\n<html lang=\"zh\"><head><meta charset=\"utf-8\">"
            f"<title>Consultation report {_e(data.public_id)}</title><style>{CSS}</style></head>"
            f"<body class=\"report\">{''.join(parts)}</body></html>\n")


# ---- PDF --------------------------------------------------------------------------------------
class _Pdf(FPDF):
    def __init__(self, data: ReportData) -> None:
        super().__init__()
        self.data = data

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT_FAMILY, size=8)
        self.cell(0, 8, f"{self.data.public_id} \u00b7 v{self.data.version} \u00b7 page {self.page_no()}",
                  align="C")


def render_pdf(data: ReportData, font_path: Path = DEFAULT_FONT) -> bytes:
    if not font_path.is_file():
        raise ReportFontError(f"report font {font_path} not found: install fonts-wqy-microhei (make system-deps) or "
                              "set [consultations] report_font to a TrueType font with Chinese glyphs")
    pdf = _Pdf(data)
    pdf.set_creation_date(datetime.fromtimestamp(data.created_ms / 1000, UTC))
    pdf.set_title(f"Consultation report {data.public_id}")
    pdf.set_author(data.expert_name)
    try:
        pdf.add_font(FONT_FAMILY, fname=str(font_path))
    except Exception as exc:  # fpdf2/fontTools raise many kinds for an unusable font file
        raise ReportFontError(f"report font {font_path} cannot be used: {exc}") from exc
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    def heading(text: str) -> None:
        pdf.ln(3)
        pdf.set_font(FONT_FAMILY, size=12)
        pdf.cell(0, 8, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT_FAMILY, size=10)

    def line(text: str) -> None:
        pdf.multi_cell(0, 6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        # Shaded rather than bold headings: the CJK font has no bold face.
        with pdf.table(text_align="LEFT", line_height=6, headings_style=FontFace(fill_color=(230, 230, 230))) as t:
            t.row(list(head))
            for row in rows:
                t.row([str(c) for c in row])

    pdf.set_font(FONT_FAMILY, size=16)
    pdf.cell(0, 10, "Consultation report \u4f1a\u8bca\u62a5\u544a", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT_FAMILY, size=10)
    line(f"Version {data.version} \u00b7 issued {when(data.created_ms)}")
    for label, value in _facts(data):
        line(f"{label}: {value}")
    case = [(label, text) for label, text in (("Chief complaint", data.chief_complaint),
                                              ("Preliminary diagnosis", data.preliminary_diagnosis),
                                              ("Question", data.question)) if text]
    if case:
        heading("Case")
        for label, text in case:
            line(f"{label}: {text}")
    if data.vitals:
        heading("Vitals at the request")
        table(("Reading", "Value", "Time"), [(v["metric"], _vital_value(v), when(v.get("time_ms")))
                                             for v in data.vitals])
    diagnoses = _by_kind(data, "diagnosis")
    if diagnoses:
        heading("Diagnoses (ICD-10)")
        for d in diagnoses:
            line(f"{d['code']} {d['title']} ({d['certainty']})" + (f" \u2014 {d['note']}" if d.get("note") else ""))
    drugs = _by_kind(data, "drug")
    if drugs:
        heading("Medication")
        table(("Drug", "Dose", "Route", "Frequency", "Duration"), [_drug_line(d) for d in drugs])
    for proc in _by_kind(data, "procedure"):
        heading(f"Procedure: {proc['name']}")
        for number, step in enumerate(proc["steps"], 1):
            line(f"{number}. {step}")
    notes = [n["text"] for n in _by_kind(data, "note")]
    if data.opinion or notes:
        heading("Opinion")
        for text in [data.opinion, *notes]:
            if text:
                line(text)
    pdf.ln(6)
    line(f"{data.expert_name}, {when(data.created_ms)}")
    return bytes(pdf.output())


def render(data: ReportData, font_path: Path = DEFAULT_FONT) -> RenderedReport:
    pdf = render_pdf(data, font_path)
    return RenderedReport(render_html(data), pdf, hashlib.sha256(pdf).hexdigest())
