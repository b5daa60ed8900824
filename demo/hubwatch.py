"""The demo's window on a hub: run a health check and follow it, print the workers.

Usage: hubwatch.py health-check [--pool NAME] | hubwatch.py workers
The hub, its API key and its thumbprint come from TENTACLE_SERVER_URL,
TENTACLE_API_KEY and TENTACLE_SERVER_THUMBPRINT, as for `tentacle
register-worker`. These stand in for `tentacle hub health-check` and
`tentacle hub workers` until those exist; demo.sh calls them through one
function each, so swapping is a one-line change there.

health-check exits 0 when the task succeeded and every worker it checked is
Healthy or HasWarnings, 1 otherwise (and after DEADLINE seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from agent.client.hub_api import HubApi

DEADLINE = 90.0  # seconds a health check may take before the demo gives up
POLL = 0.25  # seconds between looks at the task's progress
FINE = ("Healthy", "HasWarnings")


def hub() -> HubApi:
    return HubApi(
        os.environ["TENTACLE_SERVER_URL"],
        os.environ["TENTACLE_API_KEY"],
        os.environ.get("TENTACLE_SERVER_THUMBPRINT"),
    )


async def pool_id(api: HubApi, name: str) -> str:
    pools = await api.get("/api/workerpools/all")
    for pool in pools:
        if name in (pool["Id"], pool["Name"]):
            return str(pool["Id"])
    raise SystemExit(f"the hub has no worker pool {name!r}")


def new_lines(details: dict[str, Any], shown: set[tuple[str, int]]) -> list[str]:
    """Log lines of the task not printed yet, each with its activity's name."""
    lines: list[tuple[str, str]] = []
    for root in details["ActivityLogs"]:
        for activity in [root, *root["Children"]]:
            for number, element in enumerate(activity["LogElements"]):
                key = (activity["Id"], number)
                if key not in shown:
                    shown.add(key)
                    where = "" if activity is root else f"{activity['Name']}: "
                    text = f"  {element['Category']:<8} {where}{element['MessageText']}"
                    lines.append((element["OccurredAt"] or "", text))
    return [text for _, text in sorted(lines, key=lambda line: line[0])]  # as they happened


async def health_check(pool: str) -> int:
    async with hub() as api:
        body = {"Name": "Health", "Arguments": {"WorkerpoolId": await pool_id(api, pool)}}
        task = await api.request("POST", "/api/tasks", body)
        print(f"Queued {task['Id']}: {task['Description']}", flush=True)
        shown: set[tuple[str, int]] = set()
        started, state = time.monotonic(), ""
        while time.monotonic() - started < DEADLINE:
            details = await api.get(f"/api/tasks/{task['Id']}/details")
            for line in new_lines(details, shown):
                print(line, flush=True)
            if details["Task"]["State"] != state:
                state = details["Task"]["State"]
                percent = details["Progress"]["ProgressPercentage"]
                print(f"{task['Id']} is {state} ({percent}%)", flush=True)
            if details["Task"]["IsCompleted"]:
                break
            await asyncio.sleep(POLL)  # a person watches: a look four times a second
        else:
            print(f"{task['Id']} did not finish within {DEADLINE:g} s", file=sys.stderr)
            return 1
        finished = details["Task"]
        print(f"{task['Id']} {finished['State']} in {finished['Duration']}", flush=True)
        workers = await api.get("/api/workers/all")
        unwell = [w["Name"] for w in workers if w["HealthStatus"] not in FINE]
        if not finished["FinishedSuccessfully"] or unwell:
            print(f"not healthy: {', '.join(unwell) or finished['ErrorMessage']}", file=sys.stderr)
            return 1
        return 0


async def workers() -> int:
    async with hub() as api:
        rows = [
            (
                w["Id"],
                w["Name"],
                w["Endpoint"]["CommunicationStyle"],
                w["HealthStatus"],
                w["OperatingSystem"],
                str(w["AgentVersion"] or "-"),
                w["Uri"],
            )
            for w in await api.get("/api/workers/all")
        ]
    header = ("Id", "Name", "Style", "Health", "OS", "Agent", "Uri")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    check = verbs.add_parser("health-check", help="run a health check of a pool and follow it")
    check.add_argument("--pool", default="Default Worker Pool")
    verbs.add_parser("workers", help="the workers, as a table")
    arguments = parser.parse_args()
    if arguments.verb == "health-check":
        return asyncio.run(health_check(arguments.pool))
    return asyncio.run(workers())


if __name__ == "__main__":
    sys.exit(main())
