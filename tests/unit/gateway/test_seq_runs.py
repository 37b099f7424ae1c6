import itertools

from hypothesis import given
from hypothesis import strategies as st

from gateway.uplink import seq_runs


def test_runs_of_consecutive_seqs() -> None:
    assert seq_runs([1, 2, 3, 7, 8, 10]) == [(1, 3), (7, 8), (10, 10)]
    assert seq_runs([]) == []


@given(st.sets(st.integers(1, 500)))
def test_runs_cover_exactly_the_seqs(seqs: set[int]) -> None:
    runs = seq_runs(sorted(seqs))
    assert {s for a, b in runs for s in range(a, b + 1)} == seqs
    assert all(b + 1 < a2 for (_, b), (a2, _) in itertools.pairwise(runs))  # maximal runs
