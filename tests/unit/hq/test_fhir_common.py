"""The shared FHIR helpers produce valid R4 JSON, including the empty search result."""

from __future__ import annotations

from fhir.resources.bundle import Bundle

from hq.fhir.common import operation_outcome, searchset


def test_an_empty_searchset_has_no_entry_array() -> None:
    bundle = searchset([], "http://hq/api/v1/fhir")
    assert bundle == {"resourceType": "Bundle", "type": "searchset", "total": 0}
    Bundle.parse_obj(bundle)


def test_a_searchset_lists_full_urls() -> None:
    bundle = searchset([{"resourceType": "Patient", "id": "7"}], "http://hq/api/v1/fhir")
    assert bundle["entry"][0]["fullUrl"] == "http://hq/api/v1/fhir/Patient/7"
    Bundle.parse_obj(bundle)


def test_operation_outcome_is_valid() -> None:
    from fhir.resources.operationoutcome import OperationOutcome

    OperationOutcome.parse_obj(operation_outcome("error", "not-found", "Patient/9 does not exist"))
