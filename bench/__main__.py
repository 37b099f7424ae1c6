"""Runs every benchmark in turn (`make bench`); each prints `name: value unit` lines."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["bench.ingest", "bench.e2e", "bench.hq_ingest", "bench.drain", "bench.chaos", "bench.dispatch",
              "bench.revocation", "bench.matching", "bench.records", "bench.booking", "bench.metrics",
              "bench.media"]


def main() -> int:
    failed = 0
    for module in BENCHMARKS:
        print(f"# {module}", flush=True)
        failed += subprocess.run([sys.executable, "-m", module]).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
