"""FHIR R4 (4.0.1) export of HQ's records as JSON: one module per resource family, each a pure mapping from
rows to resources plus its routes under /api/v1/fhir/<Type>. `hq.fhir.common` holds what they share."""
