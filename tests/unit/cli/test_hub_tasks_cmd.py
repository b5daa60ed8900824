"""The pure parts of hub run/deploy/task: what a follower prints from the details, ids,
syntaxes and variables files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest

from agent.cli.hub_tasks_cmd import (
    TaskWatch,
    outcome_line,
    output_variables,
    syntax_of,
    task_number,
    variables_of,
)
from agent.cli.hub_views import HubViewError


def element(number: int, text: str) -> dict[str, Any]:
    return {"Id": number, "Category": "Info", "OccurredAt": "2026-01-01T00:00:00+00:00",
            "MessageText": text, "Detail": None}  # fmt: skip


def step(
    number: int,
    worker: str,
    elements: list[dict[str, Any]],
    ended: bool = False,
    status: str = "Running",
    variables: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "Id": f"ServerTasks-1_{number}",
        "Name": f"Run on {worker}",
        "Worker": worker,
        "Status": status,
        "Started": "2026-01-01T00:00:00+00:00",
        "Ended": "2026-01-01T00:00:01+00:00" if ended else None,
        "Children": [],
        "LogElements": elements,
        "OutputVariables": variables or [],
    }


def details(
    steps: list[dict[str, Any]], root: list[dict[str, Any]] | None = None, cursor: int = 0
) -> dict[str, Any]:
    return {
        "Task": {"Id": "ServerTasks-1", "IsCompleted": False},
        "ActivityLogs": [{"Id": "ServerTasks-1", "Children": steps, "LogElements": root or []}],
        "NextLogCursor": cursor,
    }


def test_new_lines_are_prefixed_by_their_worker_in_the_order_they_were_stored() -> None:
    watch = TaskWatch()
    first = details(
        [step(1, "web-1", [element(2, "one"), element(4, "three")]),
         step(2, "web-2", [element(3, "two")])],
        root=[element(1, "Running on 2 workers")],
        cursor=4,
    )  # fmt: skip
    assert watch.news(first) == ["Running on 2 workers", "[web-1] one", "[web-2] two",
                                 "[web-1] three"]  # fmt: skip
    assert watch.cursor == 4
    # the hub sends only what is newer than the cursor; anything older is not shown again
    again = details(
        [step(1, "web-1", [element(4, "three"), element(6, "five")], ended=True, status="Success"),
         step(2, "web-2", [element(5, "four")])],
        cursor=6,
    )  # fmt: skip
    assert watch.news(again) == ["[web-2] four", "[web-1] five", "[web-1] finished: Success"]
    assert watch.news(again) == []  # an ended step is announced once
    assert watch.cursor == 6


def test_a_step_is_finished_by_its_status_not_by_an_end_time_alone() -> None:
    watch = TaskWatch()
    for status in ("Pending", "Running"):
        assert watch.news(details([step(1, "web-1", [], ended=True, status=status)])) == []
    ended = details([step(1, "web-1", [], ended=True, status="Failed")])
    assert watch.news(ended) == ["[web-1] finished: Failed"]


def test_the_cursor_follows_the_hub_even_without_new_lines() -> None:
    watch = TaskWatch(cursor=3)
    assert watch.news(details([], cursor=9)) == []
    assert watch.cursor == 9


def test_children_of_a_step_carry_its_worker() -> None:
    parent = step(1, "web-1", [])
    parent["Children"] = [{"Id": "x", "Name": "Extract", "Status": "Running", "Ended": None,
                           "Children": [], "LogElements": [element(1, "extracting")]}]  # fmt: skip
    assert TaskWatch().news(details([parent])) == ["[web-1] extracting"]


def test_output_variables_per_worker_sensitive_ones_masked() -> None:
    variables = [
        {"Name": "DeployedAt", "Value": "now", "IsSensitive": False},
        {"Name": "Token", "Value": "s3cret", "IsSensitive": True},
    ]
    shown = output_variables(details([step(1, "web-1", [], variables=variables)]))
    assert shown == ["[web-1] DeployedAt = now", "[web-1] Token = ********"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("ServerTasks-12", "ServerTasks-12"), ("servertasks-7", "ServerTasks-7"),
     ("3", "ServerTasks-3")],
)  # fmt: skip
def test_task_ids(given: str, expected: str) -> None:
    assert task_number(given) == expected


@pytest.mark.parametrize("given", ["", "Tasks-1", "ServerTasks-", "ServerTasks-1x", "-1"])
def test_a_task_id_that_is_not_one_is_refused_naming_the_form(given: str) -> None:
    with pytest.raises(click.BadParameter, match="expected a task id such as ServerTasks-12"):
        task_number(given)


def test_the_syntax_is_chosen_or_comes_from_the_extension() -> None:
    assert syntax_of(Path("a.py"), None) == "Python"
    assert syntax_of(Path("a.sh"), None) == "Bash"
    assert syntax_of(Path("a"), None) == "Bash"
    assert syntax_of(Path("a.py"), "sh") == "sh"
    assert syntax_of(Path("a.sh"), "PYTHON") == "Python"


def test_an_unsuccessful_task_is_one_line() -> None:
    task = {"Id": "ServerTasks-2", "State": "Failed", "ErrorMessage": "web-1: exited with code 3"}
    assert outcome_line(task) == "ServerTasks-2 Failed: web-1: exited with code 3"
    assert outcome_line({**task, "ErrorMessage": ""}) == "ServerTasks-2 Failed: no reason given"


def test_a_variables_file_in_the_executors_forms(tmp_path: Path) -> None:
    listed = tmp_path / "v.json"
    listed.write_text(json.dumps([
        {"name": "Web.Port", "value": 8080},
        {"name": "Password", "value": "pw", "sensitive": True},
        {"name": "Empty", "value": None},
    ]))  # fmt: skip
    assert variables_of(listed) == [
        {"Name": "Web.Port", "Value": "8080", "IsSensitive": False},
        {"Name": "Password", "Value": "pw", "IsSensitive": True},
        {"Name": "Empty", "Value": "", "IsSensitive": False},
    ]
    mapped = tmp_path / "m.json"
    mapped.write_text('{"A": "1"}')
    assert variables_of(mapped) == [{"Name": "A", "Value": "1", "IsSensitive": False}]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("not json", "is not JSON"), ('[{"value": 1}]', "has no name"),
     ('[{"name": "a", "sensitive": "yes"}]', "sensitive must be true or false")],
)  # fmt: skip
def test_a_bad_variables_file_names_the_file_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(HubViewError, match=problem) as raised:
        variables_of(path)
    assert str(raised.value).startswith("--variables: ")
    assert str(path) in str(raised.value)
