"""The consultation report as HTML and as PDF: everything the expert advised is in both, Chinese text included
(checked by extracting the PDF's text), values are escaped in the HTML, and a missing font is a clear error."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from hq import advice, reports

ADVICE = [{"kind": i.kind.value, "body": i.body} for i in advice.validate([
    {"kind": "diagnosis", "code": "I21.9", "certainty": "provisional", "note": "下壁导联ST段抬高"},
    {"kind": "drug", "name": "阿司匹林 Aspirin", "dose": "300 mg", "route": "oral", "frequency": "stat",
     "duration": "single dose"},
    {"kind": "drug", "name": "Heparin", "dose": "80 units/kg", "route": "iv", "frequency": "q6h", "duration": "2 days"},
    {"kind": "procedure", "name": "转运 Transfer", "steps": ["12-lead ECG", "联系120急救中心", "Keep NPO"]},
    {"kind": "note", "text": "3小时后复查肌钙蛋白"},
])]
DATA = reports.ReportData(
    public_id="0123456789abcdef0123456789abcdef", version=2, kind="emergency", clinic="北区诊所 clinic-north",
    created_ms=1_800_000_600_000, requested_ms=1_800_000_000_000, accepted_ms=1_800_000_030_000,
    expert_name="王医生 Dr. Wang", expert_title="主任医师", expert_hospital="中心医院", department="心血管内科",
    patient_name="张三 <script>", patient_mrn="P-N-0001", chief_complaint="胸痛2小时 chest pain",
    preliminary_diagnosis="ACS?", question="Thrombolysis?", opinion="考虑急性下壁心肌梗死，建议立即转运。",
    vitals=[{"metric": "MDC_PULS_OXIM_SAT_O2", "value": 91.0, "unit": "%", "time_ms": 1_800_000_000_000,
             "device_id": "mon-1", "source": "gateway"}],
    advice=ADVICE)


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_the_pdf_holds_the_whole_advice_in_chinese_and_english() -> None:
    rendered = reports.render(DATA)
    assert rendered.pdf.startswith(b"%PDF-")
    text = pdf_text(rendered.pdf)
    for expected in ("会诊报告", "王医生 Dr. Wang", "主任医师", "心血管内科", "张三", "P-N-0001", "胸痛2小时",
                     "I21.9 Acute myocardial infarction, unspecified", "下壁导联ST段抬高", "阿司匹林 Aspirin",
                     "300 mg", "oral (PO)", "immediately, once", "80 units/kg", "every 6 hours", "2 days",
                     "1. 12-lead ECG", "2. 联系120急救中心", "3. Keep NPO", "3小时后复查肌钙蛋白",
                     "考虑急性下壁心肌梗死", "MDC_PULS_OXIM_SAT_O2", "91 %", "2027-01-15"):
        assert expected in text, expected
    assert len(rendered.sha256) == 64


def test_the_html_holds_the_same_and_escapes_every_value() -> None:
    html = reports.render_html(DATA)
    assert "张三 &lt;script&gt;" in html and "<script>" not in html
    for expected in ("I21.9", "Acute myocardial infarction, unspecified", "阿司匹林 Aspirin", "every 6 hours",
                     "<li>联系120急救中心</li>", "考虑急性下壁心肌梗死", "Version 2"):
        assert expected in html, expected


def test_the_same_report_renders_to_the_same_pdf() -> None:
    assert reports.render_pdf(DATA) == reports.render_pdf(DATA)


def test_a_missing_font_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(reports.ReportFontError, match="fonts-wqy-microhei"):
        reports.render_pdf(DATA, tmp_path / "none.ttf")
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"not a font")
    with pytest.raises(reports.ReportFontError, match="cannot be used"):
        reports.render_pdf(DATA, bad)
