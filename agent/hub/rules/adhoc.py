"""AdHocScript arguments (pure): what a script task may ask for, each fault named.

``ScriptBody`` (required text), ``Syntax`` (Bash, Python, sh, any case; Bash when
absent), ``ScriptArguments`` (a list of strings), ``TargetAllWorkers`` (a bool),
``MaxParallelism`` (an integer >= 1), ``Timeout`` (seconds > 0), ``ProjectId``
(the isolation group its scripts run in on a worker; else the task's space). The pool and the
workers (``WorkerPoolId``, ``MachineIds``) are checked against the store by the API.
"""

from __future__ import annotations

import json
import math
from typing import Any

SYNTAXES = {"bash": "bash", "python": "python", "sh": "sh"}
MAX_SCRIPT_CHARS = 1024 * 1024  # a script body is text people wrote, not a payload
MAX_PARALLELISM = 1000


def script_syntax(value: Any) -> str | None:
    """The agent's syntax for an ``Arguments.Syntax`` (Bash, Python, sh; any case;
    absent or null: bash), None if it is not one of them."""
    if value is None:
        return "bash"
    return SYNTAXES.get(value.lower()) if isinstance(value, str) else None


def _shown(value: Any) -> str:
    return json.dumps(value)[:80]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_seconds(value: Any) -> bool:
    """Whether a ``Timeout`` is a number of seconds > 0 that a float holds (not NaN,
    not infinite, not an integer too large for a float: the dispatcher computes with
    it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value)) and value > 0
    except OverflowError:
        return False


def target_errors(arguments: dict[str, Any]) -> list[str]:
    """What is wrong with ``TargetAllWorkers`` (a bool; not together with MachineIds,
    which would leave the task's workers ambiguous)."""
    target_all = arguments.get("TargetAllWorkers")
    if target_all is not None and not isinstance(target_all, bool):
        return [f"Arguments.TargetAllWorkers must be true or false, not {_shown(target_all)}"]
    if target_all is True and arguments.get("MachineIds"):
        return [
            "Arguments.TargetAllWorkers and Arguments.MachineIds: give one of them "
            "(TargetAllWorkers: every worker of the pool; MachineIds: those workers)"
        ]
    return []


MAX_PROJECT_ID = 200  # as the agent's IsolationGroup (agent.scripts.users)


def project_errors(arguments: dict[str, Any]) -> list[str]:
    """What is wrong with ``ProjectId`` (AdHocScript and Deploy): absent or null, or the
    project's id, whose scripts run apart from every other project's on a worker."""
    project = arguments.get("ProjectId")
    if project is None:
        return []
    if (
        not isinstance(project, str)
        or not project.strip()
        or len(project) > MAX_PROJECT_ID
        or not project.isprintable()
    ):
        return [
            f'Arguments.ProjectId must be a project\'s id (e.g. "Projects-1", 1 to '
            f"{MAX_PROJECT_ID} printable characters) or null, not {_shown(project)}"
        ]
    return []


def isolation_group(arguments: dict[str, Any], space: str) -> str:
    """The isolation group a task's scripts run in on a worker: its ``ProjectId``,
    else its space (``space``, e.g. "Spaces-1"): never another project's uid."""
    project = arguments.get("ProjectId")
    return project if isinstance(project, str) and project else space


def adhoc_errors(arguments: dict[str, Any]) -> list[str]:
    """What is wrong with an AdHocScript task's ``Arguments`` (besides pool and
    workers), each entry naming its field and what was expected."""
    errors = []
    body = arguments.get("ScriptBody")
    if not isinstance(body, str) or not body.strip():
        errors.append(f"Arguments.ScriptBody is required: the script's text, not {_shown(body)}")
    elif len(body) > MAX_SCRIPT_CHARS:
        errors.append(
            f"Arguments.ScriptBody must be at most {MAX_SCRIPT_CHARS} characters, not {len(body)}"
        )
    if script_syntax(arguments.get("Syntax")) is None:
        errors.append(
            "Arguments.Syntax must be one of Bash, Python, sh (any case), "
            f"not {_shown(arguments.get('Syntax'))}"
        )
    script_arguments = arguments.get("ScriptArguments")
    if script_arguments is not None and (
        not isinstance(script_arguments, list)
        or not all(isinstance(a, str) for a in script_arguments)
    ):
        errors.append(
            'Arguments.ScriptArguments must be a list of strings (e.g. ["--fast"]), '
            f"not {_shown(script_arguments)}"
        )
    elif script_arguments is not None:
        errors += [
            f"Arguments.ScriptArguments[{i}] must not contain NUL characters "
            "(no process argument can hold one)"
            for i, argument in enumerate(script_arguments)
            if "\x00" in argument
        ]
    errors += target_errors(arguments)
    parallelism = arguments.get("MaxParallelism")
    if parallelism is not None and (
        not _is_int(parallelism) or not 1 <= parallelism <= MAX_PARALLELISM
    ):
        errors.append(
            f"Arguments.MaxParallelism must be an integer from 1 to {MAX_PARALLELISM}, "
            f"not {_shown(parallelism)}"
        )
    return errors
