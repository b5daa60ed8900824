"""The test helpers' own contracts: a wait that cannot be met fails, and says why."""

from __future__ import annotations

import re

import pytest

from tests.helpers.agent import AgentProcess


def test_waiting_for_a_log_line_that_never_comes_fails_with_the_log_so_far(
    listening_agent: AgentProcess,
) -> None:
    with pytest.raises(AssertionError) as caught:
        listening_agent.wait_for_log("a line no agent writes", timeout=0.1)
    message = str(caught.value)
    assert message.startswith("not within 0.1 s: a line containing 'a line no agent writes'")
    assert "the output so far:" in message
    with pytest.raises(AssertionError, match=re.escape("not within 0.1 s: a line containing")):
        listening_agent.wait_for_output("Agent stopped", timeout=0.1)
