from __future__ import annotations

from typing import Any

import pytest

from agent.hub.adhoc import outcome_of
from agent.hub.rules.adhoc import adhoc_errors, is_seconds, script_syntax
from agent.hub.runner import Outcome
from agent.hub.steps import StepResult


@pytest.mark.parametrize(
    ("given", "syntax"),
    [
        (None, "bash"),
        ("Bash", "bash"),
        ("bash", "bash"),
        ("PYTHON", "python"),
        ("sh", "sh"),
        ("Sh", "sh"),
        ("PowerShell", None),
        ("", None),
        (3, None),
    ],
)
def test_a_syntax_is_octopus_s_or_ours_in_any_case(given: Any, syntax: str | None) -> None:
    assert script_syntax(given) == syntax


def test_good_arguments_have_no_errors() -> None:
    arguments = {"ScriptBody": "echo hi", "Syntax": "Python", "ScriptArguments": ["a"],
                 "TargetAllWorkers": True, "MaxParallelism": 3}  # fmt: skip
    assert adhoc_errors(arguments) == []


def test_every_bad_argument_is_named_at_once() -> None:
    errors = adhoc_errors({"Syntax": "cmd", "ScriptArguments": [1], "TargetAllWorkers": 1,
                           "MaxParallelism": 0})  # fmt: skip
    assert [error.split()[0] for error in errors] == [
        "Arguments.ScriptBody",
        "Arguments.Syntax",
        "Arguments.ScriptArguments",
        "Arguments.TargetAllWorkers",
        "Arguments.MaxParallelism",
    ]


OK = StepResult("Success", 0, None)
FAILED = StepResult("Failed", 3, "web-1: the script exited with code 3")


@pytest.mark.parametrize(
    ("results", "outcome"),
    [
        ([OK, OK], Outcome(True)),
        ([OK, FAILED], Outcome(False, error="web-1: the script exited with code 3")),
        (
            [FAILED, StepResult("Failed", None, "web-2: connection lost")],
            Outcome(False, error="web-1: the script exited with code 3; web-2: connection lost"),
        ),
        (
            [OK, StepResult("Canceled", None, "web-2: canceled")],
            Outcome(False, error="canceled", state="Canceled"),
        ),
        (
            [FAILED, StepResult("TimedOut", None, "web-2: the task timed out")],
            Outcome(False, error="the task timed out after 5 s", state="TimedOut"),
        ),
    ],
)
def test_a_task_ends_as_its_steps_did(results: list[StepResult], outcome: Outcome) -> None:
    assert outcome_of(results, 5) == outcome


@pytest.mark.parametrize(
    ("given", "valid"),
    [
        (1, True),
        (0.5, True),
        (0, False),
        (-1, False),
        (True, False),
        ("5", False),
        (float("nan"), False),
        (float("inf"), False),
        (10**400, False),
    ],
)
def test_a_timeout_is_a_finite_number_of_seconds(given: Any, valid: bool) -> None:
    assert is_seconds(given) is valid
