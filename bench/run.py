"""Run every benchmark in bench/ (files named bench_*.py), one after another.

Each benchmark measures the project against a baseline taken in the same run
and prints ratios last; machines here are noisy, so only ratios are compared.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    benchmarks = sorted(Path(__file__).parent.glob("bench_*.py"))
    if not benchmarks:
        print("no benchmarks yet")
        return 0
    failed = 0
    for path in benchmarks:
        print(f"== {path.stem}", flush=True)
        failed |= subprocess.run([sys.executable, str(path)], check=False).returncode
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
