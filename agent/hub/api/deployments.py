"""POST /api/tasks with ``Name: "Deploy"``: its arguments checked, and its sensitive
values sealed before they are stored (agent.hub.secrets).

``PackageId`` and ``PackageVersion`` (text, required) must name a package of the
space's repository; ``Variables`` is a list of ``{"Name", "Value", "IsSensitive"}``
(a name once, whatever its case; the value text or null). The three keys are
read in any case, as Octopus's JSON binding does, and stored as spelled here; any
other key is refused, so that nothing unknown (a misspelt value, a sensitive one
among them) is ever stored or shown; ``TargetAllWorkers`` a
bool and ``MaxParallelism`` an integer from 1. The pool, the workers and the
timeout are checked as for every task (agent.hub.api.task_arguments).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub.api.context import context_of
from agent.hub.api.errors import ApiError
from agent.hub.rules.adhoc import MAX_PARALLELISM, target_errors
from agent.hub.secrets import SEALED, HubKey, seal_variables
from agent.hub.store import packages as store_packages

KEY = "secrets"  # HubContext.extras: the HubKey
MAX_VARIABLES = 10_000
MAX_NAME = 400
MAX_VALUE = 1024 * 1024
VARIABLE_KEYS = ("Name", "Value", "IsSensitive")


def key_of(request: web.Request) -> HubKey:
    key = context_of(request).extras.get(KEY)
    if not isinstance(key, HubKey):
        raise ApiError(503, "this hub node has no key for sensitive values")
    return key


def _shown(value: Any) -> str:
    return json.dumps(value)[:80]


def canonical_entry(entry: dict[str, Any], where: str) -> tuple[list[str], dict[str, Any]]:
    """The entry with its keys spelled as in VARIABLE_KEYS (any case accepted), and
    what is wrong with its keys: one given twice in different cases, or an unknown one
    (named, never its value: it may be a secret)."""
    canonical = {key.lower(): key for key in VARIABLE_KEYS}
    errors: list[str] = []
    result: dict[str, Any] = {}
    for key, value in entry.items():
        known = canonical.get(key.lower()) if isinstance(key, str) else None
        if key == SEALED:
            errors.append(f"{where}.{SEALED} is the hub's own field: send Value")
        elif known is None:
            errors.append(
                f"{where} has the key {_shown(key)}: a variable takes only "
                f"{', '.join(VARIABLE_KEYS)} (any case)"
            )
        elif known in result:
            errors.append(f"{where} gives {known} more than once (in different cases)")
        else:
            result[known] = value
    return errors, result


def canonical_variables(variables: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """What is wrong with ``Arguments.Variables``, each entry naming the variable, and
    the variables with their keys spelled as stored (only meaningful without errors)."""
    if variables is None:
        return [], []
    expected = '[{"Name": "Port", "Value": "8080", "IsSensitive": false}, ...]'
    if not isinstance(variables, list):
        return [f"Arguments.Variables must be a list like {expected}, not {_shown(variables)}"], []
    if len(variables) > MAX_VARIABLES:
        return [
            f"Arguments.Variables holds {len(variables)} variables: at most {MAX_VARIABLES}"
        ], []
    errors: list[str] = []
    seen: set[str] = set()
    entries: list[dict[str, Any]] = []
    for position, given in enumerate(variables):
        where = f"Arguments.Variables[{position}]"
        if not isinstance(given, dict):
            errors.append(f"{where} must be an object like {expected[1:-6]}, not {_shown(given)}")
            continue
        key_errors, entry = canonical_entry(given, where)
        errors += key_errors
        entries.append(entry)
        name, value = entry.get("Name"), entry.get("Value")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            errors.append(
                f"{where}.Name must be text of 1 to {MAX_NAME} characters, not {_shown(name)}"
            )
            continue
        if name.lower() in seen:
            errors.append(f"{where}: the variable {name!r} is given more than once (any case)")
        seen.add(name.lower())
        sensitive = entry.get("IsSensitive", False)
        if not isinstance(sensitive, bool):
            errors.append(
                f"{where}.IsSensitive ({name}) must be true or false, not {_shown(sensitive)}"
            )
        if value is not None and not isinstance(value, str):
            shown = "a sensitive value" if sensitive is True else _shown(value)
            errors.append(f"{where}.Value ({name}) must be text or null, not {shown}")
        elif isinstance(value, str) and len(value) > MAX_VALUE:
            errors.append(f"{where}.Value ({name}) must be at most {MAX_VALUE} characters")
    return errors, entries


def _other_errors(arguments: dict[str, Any]) -> list[str]:
    errors = []
    for field in ("PackageId", "PackageVersion"):
        value = arguments.get(field)
        if not isinstance(value, str) or not value.strip():
            errors.append(
                f"Arguments.{field} is required: the package's {field[7:].lower()} as in the "
                f"repository (GET /api/packages), not {_shown(value)}"
            )
    errors += target_errors(arguments)
    parallelism = arguments.get("MaxParallelism")
    if parallelism is not None and (
        isinstance(parallelism, bool)
        or not isinstance(parallelism, int)
        or not 1 <= parallelism <= MAX_PARALLELISM
    ):
        errors.append(
            f"Arguments.MaxParallelism must be an integer from 1 to {MAX_PARALLELISM}, "
            f"not {_shown(parallelism)}"
        )
    return errors


async def deploy_arguments(
    conn: AsyncConnection, space: int, arguments: dict[str, Any], request: web.Request
) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with a Deploy task's ``Arguments`` (besides pool, workers and
    timeout), and the arguments to store: sensitive values sealed."""
    variable_problems, entries = canonical_variables(arguments.get("Variables"))
    errors = _other_errors(arguments) + variable_problems
    if errors:
        return errors, arguments
    package_id, version = arguments["PackageId"], arguments["PackageVersion"]
    if await store_packages.find(conn, space, package_id, version) is None:
        return [
            f"Arguments.PackageId, Arguments.PackageVersion: there is no package {package_id} "
            f"{version} in this space's repository (upload it with POST /api/packages/raw)"
        ], arguments
    stored = dict(arguments)
    stored["Variables"] = seal_variables(entries, key_of(request))
    return [], stored


def describe(arguments: dict[str, Any], pool: str, machines: list[str]) -> str:
    """A Deploy task's description."""
    what = f"Deploy {arguments.get('PackageId')} {arguments.get('PackageVersion')}"
    if machines:
        return f"{what} to {', '.join(machines)}"
    which = "every worker" if arguments.get("TargetAllWorkers") else "a worker"
    return f"{what} to {which} of {pool or 'the default pool'}"
