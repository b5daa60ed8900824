"""Reading a server-sent event stream (the hub's /details/stream) as a browser does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Event:
    name: str
    data: Any
    id: str | None


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """The stream's events in order (comments skipped), until it closes."""
    name, data, event_id = "message", [], None
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield Event(name, json.loads("\n".join(data)), event_id)
            name, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value


def log_lines(document: dict[str, Any]) -> list[str]:
    """Every log line of a details document (task-level first, then each step's)."""
    [root] = document["ActivityLogs"]
    lines = [element["MessageText"] for element in root["LogElements"]]
    for step in root["Children"]:
        lines += [element["MessageText"] for element in step["LogElements"]]
    return lines
