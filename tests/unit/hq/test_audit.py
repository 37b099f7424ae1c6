"""The audit log's hash chain: any edited, removed or reordered entry is found, and named."""

from __future__ import annotations

from typing import Any

from hq.audit import GENESIS_HASH, entry_hash, verify_rows


def chain(n: int) -> list[dict[str, Any]]:
    rows, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        row = {"id": i, "at_ms": 1000 + i, "actor_user_id": 7, "actor": "user:alice", "action": "patient.read",
               "target_type": "patient", "target_id": str(i), "clinic_id": "c1", "detail": {"rows": i}}
        row["prev_hash"], row["hash"] = prev, entry_hash(prev, row)
        prev = row["hash"]
        rows.append(row)
    return rows


def test_an_untouched_chain_verifies() -> None:
    verdict = verify_rows(iter(chain(5)), expected_last_id=5)
    assert verdict.ok and verdict.checked == 5
    assert str(verdict) == "audit log intact: 5 entries, hash chain verified"


def test_an_edited_entry_is_named() -> None:
    rows = chain(5)
    rows[2]["actor"] = "user:mallory"
    verdict = verify_rows(iter(rows))
    assert not verdict.ok and verdict.first_bad_id == 3 and "edited" in verdict.problem


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    rows = chain(5)
    rows[2]["detail"] = {"rows": 0}
    rows[2]["hash"] = entry_hash(rows[2]["prev_hash"], rows[2])
    verdict = verify_rows(iter(rows))
    assert not verdict.ok and verdict.first_bad_id == 4 and "previous entry" in verdict.problem


def test_a_removed_entry_is_named() -> None:
    rows = chain(5)
    del rows[1]
    verdict = verify_rows(iter(rows))
    assert not verdict.ok and verdict.first_bad_id == 2 and "missing" in verdict.problem


def test_reordered_entries_are_found() -> None:
    rows = chain(5)
    rows[1], rows[2] = rows[2], rows[1]
    verdict = verify_rows(iter(rows))
    assert not verdict.ok and verdict.first_bad_id == 2


def test_entries_removed_from_the_end_are_found_by_the_head() -> None:
    verdict = verify_rows(iter(chain(3)), expected_last_id=5)
    assert not verdict.ok and verdict.first_bad_id == 4 and "removed from the end" in verdict.problem


def test_renumbered_entries_after_a_removal_are_found() -> None:
    rows = chain(4)
    del rows[1]
    for i, row in enumerate(rows, start=1):
        row["id"] = i
    verdict = verify_rows(iter(rows))
    assert not verdict.ok and verdict.first_bad_id == 2
