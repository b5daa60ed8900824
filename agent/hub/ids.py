"""Document ids as Octopus writes them: ``Workers-7`` is row 7 of the workers table."""

from __future__ import annotations

import re

from agent.errors import TentacleError

SPACE = "Spaces"
WORKER = "Workers"
WORKER_POOL = "WorkerPools"
MACHINE_POLICY = "MachinePolicies"
SERVER_TASK = "ServerTasks"
EVENT = "Events"
API_KEY = "APIKeys"
ACCOUNT = "Accounts"

_ID = re.compile(r"^([A-Za-z]+)-([1-9][0-9]{0,17})$")


class UnknownId(TentacleError):
    """An id that names nothing of the kind asked for (the API answers 404)."""


def format_id(kind: str, number: int) -> str:
    return f"{kind}-{number}"


def parse_id(kind: str, text: str) -> int:
    """The row number in ``text`` (``Workers-7`` -> 7); UnknownId if it is not a ``kind`` id."""
    match = _ID.match(text.strip())
    if match is None or match.group(1).lower() != kind.lower():
        raise UnknownId(f"{text!r} is not a {kind} id (expected {kind}-N)")
    return int(match.group(2))


def try_parse_id(kind: str, text: str) -> int | None:
    try:
        return parse_id(kind, text)
    except UnknownId:
        return None
