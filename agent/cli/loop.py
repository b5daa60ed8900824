"""Which event loop the commands run on: uvloop by default, the standard loop as fallback.

uvloop (libuv, as uvicorn uses it) is the default because the same-run A/B in
docs/decisions.md shows it wins: its TLS reads into a buffer it does not touch
until data comes, so an idle polling connection costs the listener a fraction
of the standard loop's 256 KiB read buffer, and round trips are shorter.

``TENTACLE_EVENT_LOOP`` chooses: ``auto`` (the default: uvloop when it is
installed, else the standard loop), ``uvloop`` (required: an error if it is
missing) or ``asyncio`` (the standard loop, e.g. to rule the loop out when
chasing a bug). Only this module reads it (the environment belongs to the CLI).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from agent.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
LOOP_VARIABLE = "TENTACLE_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(environ: Mapping[str, str] | None = None) -> tuple[str, LoopFactory | None]:
    """The loop ``environ`` (default: the process's) asks for: (its name, its factory).

    The factory is None for the standard loop. Raises ConfigError for a value
    not in CHOICES, or for ``uvloop`` when uvloop is not installed.
    """
    values = os.environ if environ is None else environ
    choice = values.get(LOOP_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ConfigError(
            f"{LOOP_VARIABLE}={values[LOOP_VARIABLE]!r} is not a known event loop: "
            f"expected one of {', '.join(CHOICES)}"
        )
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                f"{LOOP_VARIABLE}=uvloop but uvloop is not installed "
                "(pip install uvloop, or unset it for the standard loop)"
            ) from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run(
    main: Coroutine[Any, Any, T],
    environ: Mapping[str, str] | None = None,
    *,
    announce: bool = False,
) -> T:
    """``asyncio.run(main)`` on the loop ``environ`` asks for (see ``loop_factory``);
    ``announce`` logs which (the agent does, so its log says what it ran on)."""
    try:
        name, factory = loop_factory(environ)
    except ConfigError:
        main.close()  # never awaited: say nothing about it but the error
        raise
    log.log(logging.INFO if announce else logging.DEBUG, "event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
