"""HTML of the expert directory's console pages: the directory with its filters, a profile with credentials and
capability figures, the profile form, the CSV import with its per-row errors, and the department taxonomy.

Rendering only, every value escaped; the data and the access decisions come from `hq.console.experts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from hq.auth import Actor
from hq.console import html
from hq.console.html import e
from hq.expert_import import COLUMNS, ENCODINGS
from hq.experts import SELF_EDITABLE

SEP = " \u00b7 "
DASH = "\u2014"


def _csrf(actor: Actor) -> str:
    return f"<input type=\"hidden\" name=\"csrf_token\" value=\"{e(actor.csrf_token or '')}\">"


def _error(message: str | None) -> str:
    return f"<p class=\"error\" role=\"alert\" id=\"form-error\">{e(message)}</p>" if message else ""


def seconds_text(value: float | None) -> str:
    if value is None:
        return "\u2014"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _share(value: float | None) -> str:
    return "\u2014" if value is None else f"{value * 100:.0f} %"


def _rating(value: float | None) -> str:
    return "\u2014" if value is None else f"{value:.1f} / 5"


def review_badges(flags: Sequence[Mapping[str, str]]) -> str:
    return "".join(f"<span class=\"flag flag-{e(f['code'])}\" title=\"{e(f['text'])}\">{e(f['code'].replace('_', ' '))}"
                   "</span>" for f in flags)


def department_options(departments: Sequence[Mapping[str, Any]], selected: int | None, *, blank: str) -> str:
    options = [f"<option value=\"\">{e(blank)}</option>"]
    for d in departments:
        mark = " selected" if d["id"] == selected else ""
        options.append(f"<option value=\"{d['id']}\"{mark}>{e(d['name'])} \u00b7 {e(d['name_zh'])}</option>")
    return "".join(options)


# ---- the directory ------------------------------------------------------------------------------
REVIEW_CHOICES = (("", "any or none"), ("any", "flagged for review"), ("not_updated", "not updated in 6 months"),
                  ("not_used", "not used in 6 months"), ("credential_expired", "credential expired"),
                  ("credential_expiring", "credential expiring"), ("no_credentials", "no credentials"))


def directory_page(actor: Actor, rows: Sequence[Mapping[str, Any]], total: int, params: Mapping[str, str],
                   departments: Sequence[Mapping[str, Any]], *, full: bool, can_manage: bool, limit: int,
                   offset: int, error: str | None = None) -> str:
    selected = params.get("department", "")
    chosen = int(selected) if selected.isdigit() else None
    review = params.get("review", "")
    review_options = "".join(f"<option value=\"{e(v)}\"{' selected' if v == review else ''}>{e(label)}</option>"
                             for v, label in REVIEW_CHOICES)
    filters = (
        "<form method=\"get\" action=\"/experts\" class=\"inline\" id=\"directory-filters\">"
        f"<label>Search <input name=\"q\" value=\"{e(params.get('q', ''))}\" placeholder=\"name, hospital, 心内科\">"
        "</label>"
        f"<label>Department <select name=\"department\">{department_options(departments, chosen, blank='all')}"
        "</select></label>"
        f"<label>Skill or disease <input name=\"tag\" value=\"{e(params.get('tag', ''))}\"></label>"
        f"<label>Language <input name=\"language\" value=\"{e(params.get('language', ''))}\" size=\"6\"></label>"
        + (f"<label>Review <select name=\"review\">{review_options}</select></label>" if full else "")
        + ("<label class=\"check\"><input type=\"checkbox\" name=\"include_inactive\" value=\"1\""
           f"{' checked' if params.get('include_inactive') else ''}> inactive too</label>" if full else "")
        + "<button type=\"submit\">Filter</button></form>")
    body_rows = []
    for r in rows:
        cap = r["capability"]
        body_rows.append(
            f"<tr data-expert=\"{r['id']}\"><td><a href=\"/experts/{r['id']}\">{e(r['name'])}</a>"
            f"{'' if r['active'] else ' <small>(inactive)</small>'}</td><td>{e(r['title'])}</td>"
            f"<td>{e(r['hospital'])}</td><td>{e(r['department']['name'])}</td>"
            f"<td>{e(', '.join(r['languages']))}</td><td>{e(', '.join(r['tags']))}</td>"
            f"<td class=\"num\">{r['daily_cap']}</td><td class=\"num\">{cap['consultations_done']}</td>"
            f"<td class=\"num\">{seconds_text(cap['median_response_s'])}</td>"
            f"<td class=\"num\">{_rating(cap['rating_avg'])}</td>"
            + (f"<td class=\"flags\">{review_badges(r['review'])}</td>" if full else "") + "</tr>")
    head = ("<tr><th>Name</th><th>Title</th><th>Hospital</th><th>Department</th><th>Languages</th><th>Skills</th>"
            "<th>Cap/day</th><th>Done</th><th>Median response</th><th>Rating</th>"
            + ("<th>Review</th>" if full else "") + "</tr>")
    shown = f"{offset + 1}\u2013{offset + len(rows)} of {total}" if rows else "no expert matches"
    pager = []
    base = {k: v for k, v in params.items() if v and k not in ("offset", "limit")}
    if offset > 0:
        pager.append(f"<a href=\"/experts?{e(urlencode({**base, 'offset': max(0, offset - limit)}))}\">previous</a>")
    if offset + len(rows) < total:
        pager.append(f"<a href=\"/experts?{e(urlencode({**base, 'offset': offset + limit}))}\">next</a>")
    actions = ("<p class=\"actions\"><a href=\"/experts/new\">Add an expert</a> \u00b7 "
               "<a href=\"/experts/import\">Import from CSV</a> \u00b7 <a href=\"/departments\">Departments</a></p>"
               if can_manage else "")
    body = (f"<h1>Experts</h1>{actions}{_error(error)}{filters}<p class=\"count\" id=\"count\">{e(shown)}</p>"
            f"<table class=\"list\" id=\"experts\"><thead>{head}</thead><tbody>{''.join(body_rows)}</tbody></table>"
            f"<p class=\"pager\">{SEP.join(pager)}</p>")
    return html.page("Experts", body, page_data={"view": "experts"}, actor=actor, current="/experts", scripts=())


# ---- one expert ---------------------------------------------------------------------------------
def profile_page(actor: Actor, expert: Mapping[str, Any], *, full: bool, can_edit: bool, can_manage: bool,
                 error: str | None = None) -> str:
    cap = expert["capability"]
    facts = [("Title", expert["title"]), ("Hospital", expert["hospital"]),
             ("Department", f"{expert['department']['name']} \u00b7 {expert['department']['name_zh']}"),
             ("Scope of practice", expert["scope_of_practice"]), ("Time zone", expert["time_zone"]),
             ("Languages", ", ".join(expert["languages"])), ("Skills and diseases", ", ".join(expert["tags"])),
             ("Daily cap", str(expert["daily_cap"])), ("Active", "yes" if expert["active"] else "no")]
    if full:
        facts += [("Reference", expert["external_ref"] or ""), ("Console account", expert["username"] or "")]
    fact_list = "".join(f"<dt>{e(k)}</dt><dd>{e(v) or DASH}</dd>" for k, v in facts)
    figures = [("Consultations done", str(cap["consultations_done"])),
               ("Dispatch offers accepted", f"{cap['offers_accepted']} of {cap['offers']}"),
               ("Median response", seconds_text(cap["median_response_s"])),
               ("p90 response", seconds_text(cap["p90_response_s"])),
               ("Rating", f"{_rating(cap['rating_avg'])} ({cap['ratings']} ratings)"),
               ("Advice adopted", f"{_share(cap['adoption_rate'])} of {cap['adoption_answers']} answered"),
               ("Last consultation", cap["last_consultation"] or "never")]
    figure_list = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in figures)
    sections = [f"<h1>{e(expert['name'])}</h1>", _error(error)]
    links = []
    if can_edit:
        links.append(f"<a href=\"/experts/{expert['id']}/edit\" id=\"edit-profile\">Edit profile</a>")
    links.append(f"<a href=\"/api/v1/fhir/Practitioner/{expert['id']}\">FHIR Practitioner</a>")
    sections.append(f"<p class=\"actions\">{SEP.join(links)}</p>")
    if full:
        flags = "".join(f"<li data-flag=\"{e(f['code'])}\">{e(f['text'])}</li>" for f in expert["review"])
        confirm = (f"<form method=\"post\" action=\"/experts/{expert['id']}/review\" class=\"inline\">{_csrf(actor)}"
                   "<button type=\"submit\">Confirm the profile is current</button></form>" if can_manage else "")
        sections.append("<section class=\"review\" id=\"review\"><h2>Review</h2>" + (
            f"<ul>{flags}</ul>{confirm}" if flags else "<p>Nothing to review.</p>") + "</section>")
    sections.append(f"<section class=\"profile\"><h2>Profile</h2><dl class=\"facts\">{fact_list}</dl></section>")
    sections.append("<section class=\"capability\" id=\"capability\"><h2>Capability (from history)</h2>"
                    f"<dl class=\"facts\">{figure_list}</dl></section>")
    if full:
        sections.append(_credentials(actor, expert, can_manage))
    return html.page(expert["name"], "".join(sections), page_data={"view": "expert", "expert_id": expert["id"]},
                     actor=actor, current="/experts", scripts=())


def _credentials(actor: Actor, expert: Mapping[str, Any], can_manage: bool) -> str:
    rows = []
    for c in expert["credentials"]:
        state = "valid" if c["valid"] else "expired"
        controls = ""
        if can_manage:
            controls = (
                f"<form method=\"post\" action=\"/experts/{expert['id']}/credentials/{c['id']}\" class=\"inline\">"
                f"{_csrf(actor)}<input type=\"date\" name=\"expires_on\" value=\"{e(c['expires_on'] or '')}\" "
                "aria-label=\"valid through\"><button type=\"submit\">Renew</button></form>"
                f"<form method=\"post\" action=\"/experts/{expert['id']}/credentials/{c['id']}/delete\" "
                f"class=\"inline\">{_csrf(actor)}<button type=\"submit\">Remove</button></form>")
        rows.append(f"<tr data-credential=\"{c['id']}\" class=\"{state}\"><td>{e(c['kind'])}</td>"
                    f"<td>{e(c['identifier'])}</td><td>{e(c['issuer'])}</td><td>{e(c['expires_on'] or 'no expiry')}"
                    f"</td><td class=\"state\">{state}</td><td>{controls}</td></tr>")
    add = ""
    if can_manage:
        add = (f"<form method=\"post\" action=\"/experts/{expert['id']}/credentials\" class=\"inline\" "
               f"id=\"add-credential\">{_csrf(actor)}"
               "<label>Kind <input name=\"kind\" required placeholder=\"medical license\"></label>"
               "<label>Number <input name=\"identifier\"></label><label>Issuer <input name=\"issuer\"></label>"
               "<label>Valid through <input type=\"date\" name=\"expires_on\"></label>"
               "<button type=\"submit\">Add credential</button></form>")
    return ("<section class=\"credentials\"><h2>Credentials</h2><table class=\"list\" id=\"credentials\"><thead><tr>"
            "<th>Kind</th><th>Number</th><th>Issuer</th><th>Valid through</th><th>State</th><th></th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{add}</section>")


def profile_form(actor: Actor, values: Mapping[str, Any], departments: Sequence[Mapping[str, Any]], *,
                 action: str, title: str, self_edit: bool, error: str | None = None) -> str:
    def shown(name: str) -> bool:
        return not self_edit or name in SELF_EDITABLE

    def field(name: str, label: str, control: str) -> str:
        return f"<label>{e(label)} {control}</label>" if shown(name) else ""

    def text(name: str, label: str, **attrs: str) -> str:
        extra = "".join(f" {k}=\"{e(v)}\"" for k, v in attrs.items())
        return field(name, label, f"<input name=\"{name}\" value=\"{e(values.get(name, ''))}\"{extra}>")

    names = "".join(f"<option value=\"{e(d['name'])}\">" for d in departments)
    active = str(values.get("active", "yes"))
    body = (
        f"<h1>{e(title)}</h1>{_error(error)}<form method=\"post\" action=\"{e(action)}\" class=\"stacked\" "
        f"id=\"profile-form\">{_csrf(actor)}"
        + text("name", "Name", required="required")
        + text("title", "Title") + text("hospital", "Hospital")
        + field("department", "Department (any name or synonym)",
                f"<input name=\"department\" list=\"department-names\" value=\"{e(values.get('department', ''))}\" "
                f"required><datalist id=\"department-names\">{names}</datalist>")
        + field("scope_of_practice", "Scope of practice", "<textarea name=\"scope_of_practice\" rows=\"3\">"
                f"{e(values.get('scope_of_practice', ''))}</textarea>")
        + text("time_zone", "Time zone (IANA)", placeholder="Asia/Shanghai")
        + text("languages", "Languages", placeholder="zh; en")
        + text("tags", "Skills and diseases (separated by ;)")
        + text("daily_cap", "Consultations a day at most", inputmode="numeric")
        + field("active", "Active", "<select name=\"active\">" + "".join(
            f"<option value=\"{v}\"{' selected' if v == active else ''}>{v}</option>" for v in ("yes", "no"))
            + "</select>")
        + text("external_ref", "Reference (staff or licence number)")
        + text("username", "Console account (role expert)")
        + "<button type=\"submit\">Save</button></form>")
    return html.page(title, body, page_data={"view": "expert-form"}, actor=actor, current="/experts", scripts=())


# ---- import -------------------------------------------------------------------------------------
def import_page(actor: Actor, report: Mapping[str, Any] | None = None, error: str | None = None) -> str:
    reference = "".join(f"<tr><td><code>{e(c.name)}</code></td><td>{'yes' if c.required else ''}</td>"
                        f"<td>{e(c.meaning)}</td><td>{e(', '.join(c.aliases))}</td></tr>" for c in COLUMNS)
    encodings = "".join(f"<option value=\"{e(k)}\">{e(v)}</option>" for k, v in ENCODINGS.items())
    form = (
        f"<form method=\"post\" action=\"/experts/import\" enctype=\"multipart/form-data\" class=\"inline\" "
        f"id=\"import-form\" data-upload>{_csrf(actor)}"
        "<label>CSV file <input type=\"file\" name=\"file\" accept=\".csv,text/csv\" required></label>"
        f"<label>Encoding <select name=\"encoding\">{encodings}</select></label>"
        "<label class=\"check\"><input type=\"checkbox\" name=\"dry_run\" value=\"1\"> check only</label>"
        "<button type=\"submit\">Import</button></form>")
    explain = (
        "<p>The file is imported whole or not at all: if any row has a problem, nothing changes and every "
        "problem is listed below with its row and column; fix the file and upload it again. A row whose "
        "<code>ref</code> is already in the directory updates that expert. The file must be UTF-8 (Excel: "
        "Save As \u201cCSV UTF-8\u201d); a GBK file (Excel\u2019s plain \u201cCSV\u201d on Chinese Windows) is "
        "read when you choose the encoding GBK.</p>")
    result = _import_result(report) if report is not None else ""
    body = (f"<h1>Import experts from CSV</h1>{_error(error)}{explain}{form}{result}"
            "<h2>Columns</h2><table class=\"list\" id=\"columns\"><thead><tr><th>Column</th><th>Required</th>"
            f"<th>Meaning</th><th>Also accepted</th></tr></thead><tbody>{reference}</tbody></table>")
    return html.page("Import experts", body, page_data={"view": "expert-import"}, actor=actor, current="/experts",
                     scripts=("/static/upload_form.js",))


def _import_result(report: Mapping[str, Any]) -> str:
    errors = report["errors"]
    if report["committed"]:
        summary = (f"Imported: {report['created']} added, {report['updated']} updated, {report['unchanged']} "
                   "unchanged.")
        state = "ok"
    elif errors:
        summary = (f"Nothing was imported: {len(errors)} problem{'s' if len(errors) != 1 else ''} in the file. "
                   "Fix them and upload the file again.")
        state = "refused"
    else:
        summary = (f"The file is fine: {report['created']} would be added, {report['updated']} updated. Nothing was "
                   "written (check only).")
        state = "checked"
    rows = "".join(
        f"<tr data-row=\"{e(x['row'] if x['row'] is not None else '')}\"><td class=\"num\">"
        f"{e(x['row'] if x['row'] is not None else 'file')}</td><td>{e(x['column'] or '')}</td>"
        f"<td>{e(x['value'] if x['value'] is not None else '')}</td><td>{e(x['error'])}</td>"
        f"<td>{e(x['expected'])}</td></tr>" for x in errors)
    table = ("<table class=\"list\" id=\"import-errors\"><thead><tr><th>Row</th><th>Column</th><th>Value</th>"
             f"<th>Problem</th><th>Expected</th></tr></thead><tbody>{rows}</tbody></table>") if errors else ""
    return (f"<section class=\"import-result {state}\" id=\"import-result\"><p class=\"summary\">{e(summary)}"
            f"<small> Encoding {e(report['encoding'])}, {report['rows']} rows read.</small></p>{table}</section>")


# ---- departments --------------------------------------------------------------------------------
def departments_page(actor: Actor, departments: Sequence[Mapping[str, Any]], *, can_manage: bool,
                     heads: Sequence[Mapping[str, Any]], error: str | None = None) -> str:
    rows = []
    for d in departments:
        synonyms = ", ".join(s["display"] for s in d["synonyms"])
        controls = ""
        if can_manage:
            head_ids = {h["user_id"] for h in d["heads"]}
            options = "".join(f"<option value=\"{h['id']}\"{' selected' if h['id'] in head_ids else ''}>"
                              f"{e(h['username'])}</option>" for h in heads)
            controls = (
                f"<form method=\"post\" action=\"/departments/{d['id']}/synonyms\" class=\"inline\">{_csrf(actor)}"
                "<input name=\"name\" placeholder=\"another name\" aria-label=\"another name\" required>"
                "<button type=\"submit\">Add name</button></form>"
                f"<form method=\"post\" action=\"/departments/{d['id']}/heads\" class=\"inline\">{_csrf(actor)}"
                f"<select name=\"user_id\" multiple size=\"2\" aria-label=\"heads\">{options}</select>"
                "<button type=\"submit\">Set heads</button></form>")
        heads_shown = ", ".join(h["username"] for h in d["heads"])
        rows.append(f"<tr data-department=\"{e(d['code'])}\"><td><strong>{e(d['name'])}</strong><br>{e(d['name_zh'])}"
                    f"<br><small><code>{e(d['code'])}</code></small></td><td class=\"synonyms\">{e(synonyms)}</td>"
                    f"<td class=\"num\">{d['active_experts']}</td><td>{e(heads_shown)}</td><td>{controls}</td></tr>")
    create = ""
    if can_manage:
        create = (f"<form method=\"post\" action=\"/departments\" class=\"inline\" id=\"new-department\">{_csrf(actor)}"
                  "<label>Code <input name=\"code\" required placeholder=\"sports_medicine\"></label>"
                  "<label>Name <input name=\"name\" required></label><label>Chinese name <input name=\"name_zh\">"
                  "</label><button type=\"submit\">Add department</button></form>")
    body = (f"<h1>Departments</h1>{_error(error)}<p>One department, many names: every name below finds the same "
            f"department in searches, requests and imports.</p>{create}<table class=\"list\" id=\"departments\">"
            "<thead><tr><th>Department</th><th>Also called</th><th>Active experts</th><th>Heads</th><th></th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")
    return html.page("Departments", body, page_data={"view": "departments"}, actor=actor, current="/experts",
                     scripts=())
