"""The event loop A/B for P1-P3: bench_scripts.py with the agent on each loop, alternating.

Usage: loop_ab.py [ROUNDS] (default 3). Each round runs bench/bench_scripts.py
once with TENTACLE_EVENT_LOOP=asyncio and once with uvloop (the order swaps
every round, so a machine getting busier does not favour one); only the agent
process changes loop: the bench's client and the raw baseline stay as they
are, so the ratios compare the agent alone. Prints each run's RATIO lines
tagged with the loop, then the median ratio per loop. `make bench-loops` runs
this and bench_polling.py (the P5b memory A/B).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOOPS = ("asyncio", "uvloop")
RATIO = re.compile(r"^RATIO (?P<what>.+?): (?P<value>[0-9.]+)")


def one_run(loop: str) -> dict[str, float]:
    env = {**os.environ, "TENTACLE_EVENT_LOOP": loop}
    completed = subprocess.run(
        [sys.executable, str(HERE / "bench_scripts.py")],
        env=env, capture_output=True, text=True, check=True, cwd=HERE.parent,
    )  # fmt: skip
    ratios = {}
    for line in completed.stdout.splitlines():
        print(f"[{loop}] {line}", flush=True)
        if match := RATIO.match(line):
            ratios[match["what"]] = float(match["value"])
    return ratios


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seen: dict[tuple[str, str], list[float]] = defaultdict(list)
    for round_number in range(rounds):
        order = LOOPS if round_number % 2 == 0 else LOOPS[::-1]
        for loop in order:
            for what, value in one_run(loop).items():
                seen[(what, loop)].append(value)
    for what in dict.fromkeys(what for what, _ in seen):
        figures = ", ".join(
            f"{loop} {statistics.median(seen[(what, loop)]):.2f} "
            f"({min(seen[(what, loop)]):.2f}-{max(seen[(what, loop)]):.2f})"
            for loop in LOOPS
        )
        print(f"A/B {what}, median (range) of {rounds}: {figures}")


if __name__ == "__main__":
    main()
