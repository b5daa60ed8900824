"""The event loop the commands run on: the standard one by default, uvloop on request."""

from __future__ import annotations

import pytest

from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli


def endpoint(agent: AgentProcess) -> list[str]:
    return ["--endpoint", agent.url, "--thumbprint", agent.thumbprint]


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, "asyncio"), ("asyncio", "asyncio"), ("uvloop", "uvloop")]
)
def test_the_agent_runs_on_the_loop_asked_for_and_answers(
    tentacle: TentacleCli, setting: str | None, expected: str
) -> None:
    env = {} if setting is None else {"TENTACLE_EVENT_LOOP": setting}
    agent = AgentProcess(tentacle, env=env).start()
    try:
        result = tentacle.ok("client", "--instance", "hub", "capabilities", *endpoint(agent),
                             "--format", "json", env=env)  # fmt: skip
        assert "capabilities/1" in result.json()["SupportedCapabilities"]
    finally:
        assert agent.stop() == 0
    # read once it has exited: the whole log is there, and a missing line fails at once
    assert f"event loop: {expected}" in agent.wait_for_log("event loop:")


def test_an_unknown_loop_is_refused_naming_the_variable_and_the_choices(
    tentacle: TentacleCli,
) -> None:
    agent = AgentProcess(tentacle)  # an instance that would run, but for the loop
    bad = {"TENTACLE_EVENT_LOOP": "tokio"}
    result = tentacle.run("agent", "--instance", agent.instance.name, env=bad)
    assert result.code != 0
    assert "Traceback" not in result.err, result.err
    assert "TENTACLE_EVENT_LOOP='tokio'" in result.err
    assert "expected one of asyncio, uvloop" in result.err
    result = tentacle.run("client", "--instance", "hub", "capabilities",
                          "--endpoint", "https://127.0.0.1:1/", "--thumbprint", "A" * 40,
                          env=bad)  # fmt: skip
    assert result.code != 0
    assert "Traceback" not in result.err, result.err
    assert "expected one of asyncio, uvloop" in result.err
