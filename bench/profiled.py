"""Run ``tentacle`` under cProfile, switched on and off by SIGUSR1 (P8_PROFILE).

Usage: profiled.py OUT ARGS...: the agent's command line with ARGS; each SIGUSR1
starts or stops the profiler on the main thread (the event loop), so that a
benchmark profiles only the part it measures; the statistics go to OUT on exit.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from typing import Any

from agent.cli.main import main

profiler = cProfile.Profile()
running = False


def toggle(_signal: int, _frame: Any) -> None:
    global running  # noqa: PLW0603 - the one switch of this small wrapper
    if running:
        profiler.disable()
    else:
        profiler.enable()
    running = not running


if __name__ == "__main__":
    out, sys.argv = sys.argv[1], [sys.argv[0], *sys.argv[2:]]
    signal.signal(signal.SIGUSR1, toggle)
    try:
        main()
    finally:
        profiler.disable()
        profiler.dump_stats(out)
