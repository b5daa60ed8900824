"""scripts.start's Environment (scripts/2): what the contract takes and refuses."""

from __future__ import annotations

import pytest

from agent.client.scripts import ScriptRequest, check_takes_environment, takes_environment
from agent.errors import CallError, UnsupportedFeature
from agent.protocol.services import (
    MAX_ENVIRONMENT_BYTES,
    MAX_ENVIRONMENT_VARIABLES,
    RESERVED_VARIABLES,
    StartScriptRequest,
)

SECRET = "s3cr3t-value-never-echoed"


def start(environment: object) -> StartScriptRequest:
    return StartScriptRequest.parse(
        {"ScriptTicket": "t1", "ScriptBody": "true", "Environment": environment}
    )


def test_an_environment_round_trips_and_defaults_to_none() -> None:
    request = start({"B_VAR": "two words", "a_var": "x=y\nz", "_": ""})
    assert dict(request.environment) == {"B_VAR": "two words", "a_var": "x=y\nz", "_": ""}
    assert request.to_wire()["Environment"] == {"B_VAR": "two words", "_": "", "a_var": "x=y\nz"}
    assert StartScriptRequest.parse({"ScriptTicket": "t", "ScriptBody": ""}).environment == ()
    assert start(None).environment == ()


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"1BAD": SECRET}, "'1BAD' is not a variable name; expected [A-Za-z_][A-Za-z0-9_]*"),
        ({"BAD-NAME": SECRET}, "'BAD-NAME' is not a variable name"),
        ({"A=B": SECRET}, "'A=B' is not a variable name"),
        ({"": SECRET}, "'' is not a variable name"),
        ({"GOOD": SECRET + "\0tail"}, "the value of GOOD contains a NUL character"),
        ({"GOOD": 3}, "the value of GOOD must be a string, not int"),
        ({"TentacleHome": SECRET}, "TentacleHome is set by the agent for every script"),
        ([SECRET], "needs 'Environment' as an object of names to strings"),
        (SECRET, "needs 'Environment' as an object of names to strings"),
    ],
)
def test_a_bad_environment_is_refused_naming_the_variable_never_the_value(
    environment: object, expected: str
) -> None:
    with pytest.raises(CallError) as caught:
        start(environment)
    assert caught.value.kind == "bad_params"
    assert expected in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "Environment" in str(caught.value)


def test_every_reserved_variable_is_refused() -> None:
    assert "TentacleScriptTicket" in RESERVED_VARIABLES
    for name in RESERVED_VARIABLES:
        with pytest.raises(CallError, match=f"{name} is set by the agent"):
            start({name: "x"})


def test_too_many_or_too_big_is_refused_naming_the_limit() -> None:
    many = {f"V{n}": "x" for n in range(MAX_ENVIRONMENT_VARIABLES + 1)}
    with pytest.raises(CallError, match=r"at most 256 \(MAX_ENVIRONMENT_VARIABLES\)"):
        start(many)
    start(dict(list(many.items())[:MAX_ENVIRONMENT_VARIABLES]))  # the limit itself is taken
    with pytest.raises(CallError, match=r"MAX_ENVIRONMENT_BYTES") as caught:
        start({"BIG": SECRET * (MAX_ENVIRONMENT_BYTES // len(SECRET) + 1)})
    assert SECRET not in str(caught.value)
    start({"BIG": "x" * (MAX_ENVIRONMENT_BYTES - len("BIG") - 2)})  # exactly the limit


def test_the_client_checks_it_as_the_agent_would_and_never_shows_it() -> None:
    request = ScriptRequest("true", environment={"PASSWORD": SECRET})
    assert dict(request.to_start().environment) == {"PASSWORD": SECRET}
    assert SECRET not in repr(request)
    assert SECRET not in repr(request.to_start())
    with pytest.raises(CallError, match="'9X' is not a variable name"):
        ScriptRequest("true", environment={"9X": "v"}).to_start()


def test_only_a_peer_listing_scripts_2_takes_it() -> None:
    assert takes_environment(["capabilities/1", "files/1", "scripts/1", "scripts/2"])
    assert not takes_environment(["capabilities/1", "files/1", "scripts/1"])
    with pytest.raises(UnsupportedFeature, match=r"serves scripts/1; scripts/2 is needed"):
        check_takes_environment(["capabilities/1", "scripts/1"], "old-agent")
