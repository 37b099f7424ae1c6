"""The garbage collector, set for a long-running server: `settle` once start-up is over.

Reference counting frees almost everything; the cyclic collector's full passes walk every container object
alive, and in a process whose requests make thousands of short-lived ones (matching an emergency builds a
candidate per expert) young passes came often enough to promote request objects and bring on full passes in
the middle of requests: the tail of expert matching (bench/matching.py).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # container allocations (net) between young passes; Python's default is 700


def settle() -> None:
    """What exists now lives as long as the process: collected once, then frozen out of the collector's sight
    (a full pass no longer walks it), and young passes made rarer."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
