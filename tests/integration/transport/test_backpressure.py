"""A peer that sends calls and never reads their answers, against a real agent process."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from pathlib import Path

from agent.protocol import message_frame
from agent.protocol.messages import Call
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.protocol import raw_peer

MIB = 1024 * 1024
FLOOD_SECONDS = 8.0  # a bounded run; nothing is asserted about time
MAX_CALLS = 6000
# An unknown service's name comes back in its error, so each answer is as big as its call.
NAME = "x" * 16 * 1024


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) * 1024


async def test_a_peer_that_never_reads_its_answers_cannot_grow_the_agent(
    agent: AgentProcess,
) -> None:
    assert agent.process is not None
    async with raw_peer(agent.url, agent.caller) as greedy:
        before = rss(agent.process.pid)
        sent = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLOOD_SECONDS):
                for call_id in range(1, MAX_CALLS + 1):  # ~96 MiB of calls, ~96 MiB of answers
                    await greedy.send_bytes(message_frame(Call(call_id, NAME, "get")))
                    sent = call_id
        grown = rss(agent.process.pid) - before
        async with agent.client() as other:  # and everyone else is still answered
            assert await other.call("capabilities", "ping") == {"Pong": True}
    assert grown < 32 * MIB, f"the agent grew by {grown // MIB} MiB for {sent} unread answers"
    assert sent < MAX_CALLS, "the agent read every call although no answer was read"


async def test_more_concurrent_calls_than_the_agent_accepts_wait_instead_of_failing(
    agent: AgentProcess,
) -> None:
    calls = 600  # the agent announces max_calls_in_flight=256
    async with agent.client() as hub:
        answers = await asyncio.gather(
            *(hub.call("capabilities", "ping") for _ in range(calls)), return_exceptions=True
        )
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert failed == [], f"{len(failed)} of {calls} failed, first: {failed[0]!r}"


async def test_an_agent_that_dropped_a_peer_who_never_reads_still_stops(
    tentacle: TentacleCli,
) -> None:
    # The drop's close frame can never be sent to such a peer: the socket's buffer is full.
    # Closing must not wait for it for ever, or the agent's stop waits for ever too.
    agent = AgentProcess(tentacle)
    agent.instance = agent.instance.save(
        agent.instance.config.with_settings(heartbeat_interval=1.0)
    )
    agent.start()
    try:
        async with raw_peer(agent.url, agent.caller) as greedy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLOOD_SECONDS):
                    for call_id in range(1, MAX_CALLS + 1):
                        await greedy.send_bytes(message_frame(Call(call_id, NAME, "get")))
            await asyncio.to_thread(agent.wait_for_log, "closing")  # dropped, still connected
            agent.signal(signal.SIGTERM)
            code = await asyncio.to_thread(agent.process.wait, 60)  # type: ignore[union-attr]
        assert code == 0, agent.log()
    finally:
        agent.stop()
