"""What the FHIR resource modules share: the media type, searchset Bundles, OperationOutcome errors, and the
identifier systems HQ uses. Pure apart from building aiohttp responses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from hq.clock import iso_from_ms

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
# Identifier systems: urn:clinic-edge:... names are ours; a deployment can map them to official OIDs.
SYSTEM_NATIONAL_ID = "urn:clinic-edge:national-id"
SYSTEM_MRN_PREFIX = "urn:clinic-edge:clinic:"  # + clinic id + ":mrn"
SYSTEM_HQ_ID = "urn:clinic-edge:hq"
SYSTEM_DEPARTMENT = "urn:clinic-edge:department"  # HQ's department taxonomy, code = departments.code


def mrn_system(clinic_id: str) -> str:
    return f"{SYSTEM_MRN_PREFIX}{clinic_id}:mrn"


def instant(ms: int | None) -> str | None:
    """A FHIR instant (UTC, with the Z suffix)."""
    return iso_from_ms(ms)


def reference(resource_type: str, resource_id: int | str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{resource_id}"}


def searchset(resources: Iterable[dict[str, Any]], base_url: str) -> dict[str, Any]:
    entries = [{"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    if entries:  # FHIR JSON has no empty arrays: an empty result has no "entry" at all
        bundle["entry"] = entries
    return bundle


def operation_outcome(severity: str, code: str, diagnostics: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}


def fhir_response(resource: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(resource, status=status, content_type=FHIR_JSON)


def not_found(resource_type: str, resource_id: str) -> web.Response:
    return fhir_response(operation_outcome("error", "not-found", f"{resource_type}/{resource_id} does not exist"), 404)


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/api/v1/fhir"


class SearchError(ValueError):
    """A search parameter is not understood; the message names it and what was expected."""


def check_params(params: Mapping[str, str], allowed: Sequence[str]) -> None:
    for name in params:
        if name not in allowed:
            raise SearchError(f"unknown search parameter {name!r}; this server supports {', '.join(allowed)}")


def search_count(params: Mapping[str, str], max_results: int, default: int = 100) -> int:
    text = params.get("_count", "").strip()
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= max_results:
        raise SearchError(f"_count {text!r}: expected a whole number from 1 to {max_results}")
    return int(text)
