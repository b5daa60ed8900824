"""Which event loop the commands run on: the standard loop, or uvloop when asked for.

``TENTACLE_EVENT_LOOP`` chooses: ``asyncio`` (the default) or ``uvloop``
(libuv, as uvicorn uses it; installed with the ``uvloop`` extra). uvloop is
not the default although it holds an idle polling connection in a quarter of
the memory: in the same-run A/B (docs/decisions.md) its ``sock_connect`` broke
a dialing agent under a reconnection storm (an open uvloop bug, "File
descriptor N is used by transport", MagicStack/uvloop#653), which a worker
must never do. Only this module reads the variable (the environment belongs
to the CLI).
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
CHOICES = ("asyncio", "uvloop")
DEFAULT = "asyncio"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(environ: Mapping[str, str] | None = None) -> tuple[str, LoopFactory | None]:
    """The loop ``environ`` (default: the process's) asks for: (its name, its factory).

    The factory is None for the standard loop. Raises ConfigError for a value
    not in CHOICES, or for ``uvloop`` when uvloop is not installed.
    """
    values = os.environ if environ is None else environ
    choice = values.get(LOOP_VARIABLE, "").strip().lower() or DEFAULT
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
        raise ConfigError(
            f"{LOOP_VARIABLE}=uvloop but uvloop is not installed "
            "(pip install 'tentacle[uvloop]', or unset it for the standard loop)"
        ) from None
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
