"""Polling mode: the agent dials out to the server and answers its calls."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.client import PollingListener
from agent.client.polling_listener import AgentNotConnected
from agent.client.scripts import LogChunk, ScriptRequest, execute_script
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.connect_proxy import ConnectProxy


@pytest.fixture
async def polling(tentacle: TentacleCli) -> AsyncIterator[tuple[AgentProcess, PollingListener]]:
    """A polling-only agent connected to a polling listener run by the test."""
    agent = AgentProcess(tentacle)
    await agent.poll_a_listener()
    agent.start()
    assert agent.listener is not None
    yield agent, agent.listener
    agent.stop()
    await agent.listener.stop()


async def test_calls_reach_a_polling_agent(
    polling: tuple[AgentProcess, PollingListener], tmp_path: Path
) -> None:
    agent, listener = polling
    assert listener.connected() == {} or agent.subscription in listener.connected()
    async with agent.client() as hub:
        assert "scripts/1" in (await hub.capabilities())["SupportedCapabilities"]
        assert list(listener.connected()) == [agent.subscription]
        local = tmp_path / "payload"
        local.write_bytes(b"polled" * 1000)
        uploaded = await hub.upload(local, "Files/payload")
        assert uploaded["Length"] == 6000
        chunks: list[LogChunk] = []
        outcome = await execute_script(hub, ScriptRequest("wc -c < ../../Files/payload; exit 5"),
                                       chunks.append)  # fmt: skip
    assert outcome.exit_code == 5
    assert [line for chunk in chunks for line in chunk.lines] == ["6000"]


async def test_a_call_waits_for_the_agent_and_then_times_out_clearly(
    polling: tuple[AgentProcess, PollingListener],
) -> None:
    agent, listener = polling
    await listener.channel(agent.subscription, agent.thumbprint)  # it has connected
    with pytest.raises(AgentNotConnected, match=r"did not connect within 0.1 s") as caught:
        await listener.channel("poll://aaaaaaaaaaaaaaaaaaaa/", agent.thumbprint, timeout=0.1)
    assert f"the last agent to connect was {agent.subscription}" in str(caught.value)
    assert "is the subscription id right?" in str(caught.value)
    with pytest.raises(AgentNotConnected, match=r"did not connect") as caught:  # wrong certificate
        await listener.channel(agent.subscription, "AB" * 20, timeout=0.1)
    assert re.search(rf"last connected \d+ s ago with certificate {agent.thumbprint}",
                     str(caught.value))  # fmt: skip


def test_the_command_line_waits_for_a_polling_agent_only_until_its_timeout(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    agent = AgentProcess(tentacle)  # never started: nothing will connect
    certificate = tmp_path / "agent.pem"
    certificate.write_bytes(agent.identity.certificate_pem)
    result = tentacle.fails(
        "client", "--instance", "hub", "capabilities", "--endpoint", "poll://aaaaaaaaaaaaaaaaaaaa/",
        "--listen", "127.0.0.1:0", "--agent-certificate", str(certificate), "--timeout", "0.5",
    )  # fmt: skip
    [waiting, error] = result.err.splitlines()
    assert waiting == "Waiting for poll://aaaaaaaaaaaaaaaaaaaa/ on 127.0.0.1:0 (up to 0.5 s)"
    assert error == (
        f"error: agent poll://aaaaaaaaaaaaaaaaaaaa/ with certificate {agent.thumbprint} did not "
        "connect within 0.5 s; no agent connected meanwhile"
    )


def test_run_script_over_polling_from_the_command_line(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = AgentProcess(tentacle)
    agent.poll("127.0.0.1", port, agent.caller.thumbprint)
    certificate = tmp_path / "agent.pem"
    certificate.write_bytes(agent.identity.certificate_pem)
    script = tmp_path / "hello.sh"
    script.write_text('echo "polled $1"; echo oops >&2; exit 3\n')
    command = subprocess.Popen(
        [sys.executable, "-m", "agent", "client", "--instance", "hub", "run-script",
         "--endpoint", agent.subscription, "--listen", f"127.0.0.1:{port}",
         "--agent-certificate", str(certificate), str(script), "--", "world"],
        env=tentacle.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert command.stderr is not None
    assert command.stderr.readline().startswith(f"Waiting for {agent.subscription}")
    agent.start()
    try:
        out, err = command.communicate(timeout=60)
    finally:
        agent.stop()
    assert (command.returncode, out, err) == (3, "polled world\n", "oops\n")


async def test_a_server_restart_mid_script_loses_neither_result_nor_log(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    from agent.client import AgentClient, Endpoint

    agent = AgentProcess(tentacle)
    await agent.poll_a_listener()
    first = agent.listener
    assert first is not None
    port = int(agent.instance.config.polling_servers[0].address.rsplit(":", 1)[1].rstrip("/"))
    agent.start()
    release = tmp_path / "release"
    body = (
        'for i in 1 2 3; do echo "before $i"; done\n'
        f'while [ ! -e "{release}" ]; do sleep 0.05; done\n'
        'for i in 1 2 3; do echo "after $i"; done\nexit 4\n'
    )
    request = ScriptRequest(body, ticket="survives-the-hub")
    endpoint = Endpoint(agent.subscription, agent.thumbprint)
    try:
        async with AgentClient.polling(first, endpoint, agent.settings()) as hub:
            started = await hub.call("scripts", "start", {"ScriptTicket": request.ticket,
                                                          "ScriptBody": body})  # fmt: skip
            assert started["State"] in ("Pending", "Running")
        await first.stop()  # the hub goes away while the script runs
        second = PollingListener(agent.settings(), [agent.identity.certificate_pem.decode()])
        await second.start("127.0.0.1", port)  # and comes back on the same port
        release.touch()
        chunks: list[LogChunk] = []
        async with AgentClient.polling(second, endpoint, agent.settings()) as hub:
            outcome = await execute_script(hub, request, chunks.append)  # resumes by ticket
        await second.stop()
    finally:
        agent.stop()
    assert outcome.exit_code == 4
    lines = [(chunk.first + n, text) for chunk in chunks for n, text in enumerate(chunk.lines)]
    assert lines == list(enumerate(["before 1", "before 2", "before 3",
                                    "after 1", "after 2", "after 3"], start=1))  # fmt: skip


@pytest.mark.parametrize("hint", [None, "is --agent-certificate the agent's?"])
async def test_an_untrusted_agent_is_refused_and_both_sides_name_the_thumbprints(
    tentacle: TentacleCli, caplog: pytest.LogCaptureFixture, hint: str | None
) -> None:
    """The refusal is told as a fact; only a caller that has a hint for its user (the
    command line's option) adds it: the hub has no --agent-certificate."""
    from agent.certs import generate_identity

    agent = AgentProcess(tentacle)
    stranger = generate_identity()  # the hub trusts this one, not the agent
    listener = PollingListener(
        agent.settings(), [stranger.certificate_pem.decode()], refusal_hint=hint
    )
    [(host, port), *_] = await listener.start("127.0.0.1", 0)
    agent.poll(host, port, agent.caller.thumbprint).start()
    try:
        # the hub runs on this event loop: wait for the agent's log off the loop
        line = await asyncio.to_thread(agent.wait_for_log, "not trust our certificate")
        assert agent.thumbprint in line
        with pytest.raises(AgentNotConnected, match="did not connect") as caught:
            await listener.channel(agent.subscription, agent.thumbprint, timeout=0.5)
        said = str(caught.value)
        assert f"untrusted certificate presented {agent.thumbprint}" in said
        assert f"with certificate {agent.thumbprint} did not connect" in said
        if hint is None:
            assert re.search(r"presented [0-9A-F]{40}, \d+ s ago$", said), said
        else:
            assert said.endswith(f" s ago ({hint})"), said
    finally:
        agent.stop()
        await listener.stop()
    refusals = [r.getMessage() for r in caplog.records if "refused a client" in r.getMessage()]
    assert f"presenting certificate {agent.thumbprint}" in refusals[0]
    assert f"trusted thumbprints: {stranger.thumbprint}" in refusals[0]


async def test_an_agent_refuses_a_hub_with_the_wrong_certificate(tentacle: TentacleCli) -> None:
    agent = AgentProcess(tentacle)
    settings = agent.settings()
    listener = PollingListener(settings, [agent.identity.certificate_pem.decode()])
    [(host, port), *_] = await listener.start("127.0.0.1", 0)
    expected = "EF" * 20
    agent.poll(host, port, expected).start()  # pinned to a thumbprint the hub does not have
    try:
        # the hub runs on this event loop: wait for the agent's log off the loop
        line = await asyncio.to_thread(agent.wait_for_log, "cannot reach polling server")
        assert f"presented certificate {agent.caller.thumbprint}" in line
        assert f"but thumbprint {expected} was expected" in line
    finally:
        agent.stop()
        await listener.stop()


@pytest.mark.parametrize("credentials", [None, ("hub-user", "s3cret")])
async def test_a_polling_agent_goes_through_its_configured_proxy(
    tentacle: TentacleCli, credentials: tuple[str, str] | None
) -> None:
    username, password = credentials or (None, None)
    proxy = ConnectProxy(username, password)
    proxy_port = await proxy.start()
    agent = AgentProcess(tentacle)
    await agent.poll_a_listener()
    agent.instance = agent.instance.save(agent.instance.config.with_settings(
        polling_proxy_host="127.0.0.1", polling_proxy_port=proxy_port,
        polling_proxy_username=username, polling_proxy_password=password,
    ))  # fmt: skip
    await call_once_then_stop(agent, proxy)
    listener_address = agent.instance.config.polling_servers[0].address
    assert proxy.tunnels
    assert all(listener_address == f"https://{t}/" for t in proxy.tunnels)
    assert proxy.refused == 0
    assert "s3cret" not in tentacle.ok("show-configuration", "--instance", "agent").out


@pytest.mark.parametrize("exempt", [False, True])
async def test_https_proxy_is_honoured_unless_no_proxy_exempts_the_host(
    tentacle: TentacleCli, exempt: bool
) -> None:
    proxy = ConnectProxy()
    proxy_port = await proxy.start()
    env = {"HTTPS_PROXY": f"http://127.0.0.1:{proxy_port}"}
    if exempt:
        env["NO_PROXY"] = "localhost,127.0.0.1"
    agent = AgentProcess(tentacle, env=env)
    await agent.poll_a_listener()
    await call_once_then_stop(agent, proxy)
    assert bool(proxy.tunnels) is not exempt


async def call_once_then_stop(agent: AgentProcess, proxy: ConnectProxy) -> None:
    """Start the polling agent, make one call through it, and stop everything."""
    agent.start()
    try:
        async with agent.client() as hub:
            assert (await hub.capabilities())["AgentVersion"]
    finally:
        agent.stop()
        assert agent.listener is not None
        await agent.listener.stop()
        await proxy.stop()
