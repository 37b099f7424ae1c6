"""`hq.heap.settle`: the start-up heap frozen out of the collector's sight, young passes made rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hq import heap


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settle_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    kept = [object() for _ in range(10)] + [[i] for i in range(1000)]  # containers alive at "start-up"
    heap.settle()
    assert gc.get_freeze_count() >= len(kept) - 10
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)
    assert all(not any(o is k for o in gc.get_objects()) for k in kept[-3:]), "frozen: no longer tracked"
