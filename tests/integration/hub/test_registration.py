"""register-worker, deregister-worker and poll-server: the real command against a real hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config.index import InstanceIndex
from agent.config.instances import open_instance
from agent.hub.keys import Permission
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import Result, TentacleCli
from tests.helpers.hub import RunningHub, hub_args, running_hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path) as running:
        yield running


async def tentacle_ok(cli: TentacleCli, *args: str, env: dict[str, str] | None = None) -> Result:
    return await asyncio.to_thread(cli.ok, *args, env=env)


async def tentacle_fails(cli: TentacleCli, *args: str) -> Result:
    return await asyncio.to_thread(cli.fails, *args)


def agent_config(cli: TentacleCli, name: str = "agent"):  # type: ignore[no-untyped-def]
    return open_instance(InstanceIndex(cli.config_home / "instances"), name).config


async def test_a_listening_worker_registers_and_trusts_the_hub(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    agent = AgentProcess(tentacle)
    result = await tentacle_ok(
        tentacle,
        "register-worker",
        "--instance",
        "agent",
        *hub_args(hub),
        "--workerpool",
        "Default Worker Pool",
        "--name",
        "web-1",
        "--publicHostName",
        "127.0.0.1",
        "--tentacle-comms-port",
        "10999",
    )
    assert "Registered web-1 as Workers-1" in result.out
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Thumbprint"] == agent.thumbprint
    assert worker["Endpoint"] == {
        "CommunicationStyle": "TentaclePassive",
        "Uri": "https://127.0.0.1:10999/",
        "Thumbprint": agent.thumbprint,
        "Id": None,
    }
    assert worker["HasCertificate"]
    trusted = [
        peer
        for peer in agent_config(tentacle).trusted
        if peer.thumbprint == hub.home.identity().thumbprint
    ]
    assert trusted
    assert trusted[0].certificate_pem is not None  # the whole certificate, not pending


async def test_registering_again_updates_the_record_and_never_duplicates(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    args = [
        "register-worker",
        "--instance",
        "agent",
        *hub_args(hub),
        "--workerpool",
        "WorkerPools-1",
        "--name",
        "again",
        "--tentacle-comms-port",  # the test's agent listens on a free port (0)
        "10933",
        "--publicHostName",
        "127.0.0.1",
    ]
    await tentacle_ok(tentacle, *args)
    second = await tentacle_ok(tentacle, *args[:-2], "--publicHostName", "10.0.0.9")
    assert "Updated the registration of again as Workers-1" in second.out
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Uri"].startswith("https://10.0.0.9:")


async def test_a_name_taken_by_another_machine_needs_force(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    AgentProcess(tentacle)
    other_cli = TentacleCli(tmp_path / "other")
    other = AgentProcess(other_cli)
    common = [
        *hub_args(hub),
        "--workerpool",
        "Default Worker Pool",
        "--name",
        "shared",
        "--tentacle-comms-port",
        "10933",
        "--publicHostName",
        "127.0.0.1",
    ]
    await tentacle_ok(tentacle, "register-worker", "--instance", "agent", *common)
    refused = await tentacle_fails(other_cli, "register-worker", "--instance", "agent", *common)
    assert "a worker named 'shared' exists already" in refused.err
    assert "--force" in refused.err
    await tentacle_ok(other_cli, "register-worker", "--instance", "agent", *common, "--force")
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Thumbprint"] == other.thumbprint


async def test_force_takes_a_name_over_for_an_agent_that_has_a_worker_of_its_own(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    """The other machine's worker gives way (two cannot share a name); this agent's
    own record keeps its id and takes the name."""
    AgentProcess(tentacle)
    other_cli = TentacleCli(tmp_path / "other")
    other = AgentProcess(other_cli)
    common = [*hub_args(hub), "--workerpool", "Default Worker Pool", "--tentacle-comms-port",
              "10933", "--publicHostName", "127.0.0.1"]  # fmt: skip
    await tentacle_ok(tentacle, "register-worker", "--instance", "agent", *common, "--name", "tw1")
    await tentacle_ok(other_cli, "register-worker", "--instance", "agent", *common, "--name", "t2")
    [mine] = await hub.api.get("/api/workers/all?name=t2")
    taken = await tentacle_ok(
        other_cli, "register-worker", "--instance", "agent", *common, "--name", "TW1", "--force"
    )
    assert "Deleted Workers-1, another machine's worker, whose name --force takes" in taken.out
    [worker] = await hub.api.get("/api/workers/all")
    assert (worker["Id"], worker["Name"], worker["Thumbprint"]) == (
        mine["Id"],
        "TW1",
        other.thumbprint,
    )


async def test_a_polling_worker_registers_with_its_subscription(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    env = {
        "TENTACLE_SERVER_URL": hub.api.url,
        "TENTACLE_API_KEY": str(hub.api.key),
        "TENTACLE_SERVER_THUMBPRINT": hub.home.identity().thumbprint,
    }
    result = await tentacle_ok(
        tentacle,
        "register-worker",
        "--instance",
        "agent",
        "--comms-style",
        "TentacleActive",
        "--workerpool",
        "Default Worker Pool",
        "--name",
        "poller",
        "--server-comms-port",
        "10950",
        env=env,
    )
    config = agent_config(tentacle)
    assert config.subscription_id is not None
    assert [s.address for s in config.polling_servers] == ["https://127.0.0.1:10950/"]
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Uri"] == config.subscription_id
    assert worker["Endpoint"]["CommunicationStyle"] == "TentacleActive"
    assert "Restart the agent" in result.out


async def test_deregistering_removes_the_worker_and_the_hub(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    await tentacle_ok(
        tentacle,
        "register-worker",
        "--instance",
        "agent",
        *hub_args(hub),
        "--comms-style",
        "TentacleActive",
        "--workerpool",
        "Default Worker Pool",
        "--name",
        "leaving",
    )
    result = await tentacle_ok(tentacle, "deregister-worker", "--instance", "agent", *hub_args(hub))
    assert "Deregistered leaving (Workers-1)" in result.out
    assert await hub.api.get("/api/workers/all") == []
    config = agent_config(tentacle)
    assert config.polling_servers == ()
    assert not any(p.thumbprint == hub.home.identity().thumbprint for p in config.trusted)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--workerpool", "Nowhere"], "the hub has no worker pool 'Nowhere'"),
        (["--policy", "Lax"], "the hub has no machine policy 'Lax'"),
        (
            ["--server-thumbprint", "AB" * 20],
            "check --server-thumbprint (`tentacle hub show-thumbprint` on the hub prints it: "
            "its `HTTPS thumbprint:` line if it has one, else its `Thumbprint:` line)",
        ),
        (["--apikey", "API-" + "Q" * 30], "401"),
    ],
)
async def test_a_registration_that_cannot_work_says_why_and_changes_nothing(
    hub: RunningHub, tentacle: TentacleCli, change: list[str], message: str
) -> None:
    AgentProcess(tentacle)
    before = agent_config(tentacle)
    args = {"--workerpool": "Default Worker Pool", "--name": "w", "--publicHostName": "x"}
    pairs = dict(zip(hub_args(hub)[::2], hub_args(hub)[1::2], strict=True))
    pairs.update(args)
    pairs.update(dict(zip(change[::2], change[1::2], strict=True)))
    flat = [part for pair in pairs.items() for part in pair]
    result = await tentacle_fails(tentacle, "register-worker", "--instance", "agent", *flat)
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert agent_config(tentacle) == before
    assert await hub.api.get("/api/workers/all") == []


async def test_a_read_only_key_cannot_register(hub: RunningHub, tentacle: TentacleCli) -> None:
    AgentProcess(tentacle)
    reader = await hub.key("reader", Permission.READ_ONLY)
    result = await tentacle_fails(
        tentacle,
        "register-worker",
        "--instance",
        "agent",
        *hub_args(hub, reader),
        "--workerpool",
        "Default Worker Pool",
        "--publicHostName",
        "127.0.0.1",
    )
    assert "403" in result.err
    assert "ConfigureServer" in result.err


async def test_registration_completes_a_bare_trust_of_the_hub(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    """`configure --trust THUMBPRINT` leaves the hub pending (TLS needs its certificate);
    registering fetches the certificate and completes that trust."""
    AgentProcess(tentacle)
    hub_thumbprint = hub.home.identity().thumbprint
    await asyncio.to_thread(
        tentacle.ok, "configure", "--instance", "agent", "--trust", hub_thumbprint
    )
    [pending] = [p for p in agent_config(tentacle).trusted if p.thumbprint == hub_thumbprint]
    assert pending.is_pending
    await tentacle_ok(
        tentacle,
        "register-worker",
        "--instance",
        "agent",
        *hub_args(hub),
        "--workerpool",
        "Default Worker Pool",
        "--publicHostName",
        "127.0.0.1",
        "--tentacle-comms-port",
        "10933",
    )
    [completed] = [p for p in agent_config(tentacle).trusted if p.thumbprint == hub_thumbprint]
    assert not completed.is_pending
    assert completed.certificate_pem is not None


async def test_a_polling_worker_learns_the_hubs_polling_port_and_follows_a_move(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    args = [
        "register-worker",
        "--instance",
        "agent",
        *hub_args(hub),
        "--comms-style",
        "TentacleActive",
        "--workerpool",
        "Default Worker Pool",
        "--name",
        "mover",
    ]
    await tentacle_ok(tentacle, *args)  # no --server-comms-port: the hub says where
    port = hub.server.polling_port
    assert [s.address for s in agent_config(tentacle).polling_servers] == [
        f"https://127.0.0.1:{port}/"
    ]
    await tentacle_ok(tentacle, *args, "--server-comms-port", "20943")  # the hub moved
    assert [s.address for s in agent_config(tentacle).polling_servers] == [
        "https://127.0.0.1:20943/"
    ]


def polling_entries(cli: TentacleCli) -> list[tuple[str, str]]:
    return [(s.address, s.thumbprint) for s in agent_config(cli).polling_servers]


def polling_args(hub: RunningHub, name: str) -> list[str]:
    return ["register-worker", "--instance", "agent", *hub_args(hub), "--comms-style",
            "TentacleActive", "--workerpool", "Default Worker Pool", "--name", name]  # fmt: skip


async def test_registering_tidies_the_entries_an_older_version_left_for_one_hub(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    """Before one entry per hub node, each polling port the hub had was kept: the file
    as that code wrote it, three entries of this hub and one of another, becomes one each."""
    AgentProcess(tentacle)
    ours, other = hub.home.identity().thumbprint, "CD" * 20
    path = open_instance(InstanceIndex(tentacle.config_home / "instances"), "agent").config_path
    older = path.read_text()
    assert "polling_servers: []\n" in older
    entries = [("127.0.0.1", 10943, ours), ("elsewhere", 10943, other),
               ("127.0.0.1", 10950, ours), ("127.0.0.1", 10960, ours)]  # fmt: skip
    listed = "".join(f"- address: https://{h}:{p}/\n  thumbprint: {t}\n" for h, p, t in entries)
    older = older.replace("polling_servers: []\n", f"polling_servers:\n{listed}")
    path.write_text(
        older.replace("subscription_id: null", "subscription_id: poll://" + "a" * 20 + "/")
    )
    assert len(agent_config(tentacle).polling_servers) == 4
    result = await tentacle_ok(tentacle, *polling_args(hub, "tidy"))
    port = hub.server.polling_port
    assert polling_entries(tentacle) == [
        (f"https://127.0.0.1:{port}/", ours),
        ("https://elsewhere:10943/", other),
    ]
    assert "instead of https://127.0.0.1:10943/, https://127.0.0.1:10950/" in result.out
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Uri"] == "poll://" + "a" * 20 + "/"  # the id the file had, kept


async def test_poll_server_to_a_node_already_polled_updates_its_entry(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    ours = hub.home.identity().thumbprint
    await tentacle_ok(tentacle, *polling_args(hub, "node"), "--server-comms-port", "20943")
    # poll-server without a port: the one the hub reports, in place of 20943
    result = await tentacle_ok(tentacle, "poll-server", "--instance", "agent", *hub_args(hub))
    port = hub.server.polling_port
    assert f"Polling https://127.0.0.1:{port}/ instead of https://127.0.0.1:20943/" in result.out
    assert polling_entries(tentacle) == [(f"https://127.0.0.1:{port}/", ours)]
    await tentacle_ok(tentacle, "poll-server", "--instance", "agent", *hub_args(hub),
                      "--server-comms-port", "30943")  # fmt: skip
    assert polling_entries(tentacle) == [("https://127.0.0.1:30943/", ours)]


async def test_registering_as_listening_stops_polling_that_hub(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    await tentacle_ok(tentacle, *polling_args(hub, "switch"))
    assert len(polling_entries(tentacle)) == 1
    result = await tentacle_ok(
        tentacle, "register-worker", "--instance", "agent", *hub_args(hub),
        "--workerpool", "Default Worker Pool", "--name", "switch",
        "--publicHostName", "127.0.0.1", "--tentacle-comms-port", "10933",
    )  # fmt: skip
    assert "no longer polling https://127.0.0.1:" in result.out
    assert polling_entries(tentacle) == []
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Endpoint"]["CommunicationStyle"] == "TentaclePassive"


async def test_deregistering_forgets_every_node_of_that_hub_and_keeps_the_others(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    ours, other = hub.home.identity().thumbprint, "CD" * 20
    await tentacle_ok(tentacle, *polling_args(hub, "leaving"))
    await asyncio.to_thread(tentacle.ok, "server-comms", "--instance", "agent",
                            "--host", "node-2", "--thumbprint", ours)  # fmt: skip
    await asyncio.to_thread(tentacle.ok, "server-comms", "--instance", "agent",
                            "--host", "elsewhere", "--thumbprint", other)  # fmt: skip
    result = await tentacle_ok(tentacle, "deregister-worker", "--instance", "agent", *hub_args(hub))
    port = hub.server.polling_port
    assert (
        f"This instance no longer polls https://127.0.0.1:{port}/, https://node-2:10943/ "
        f"and no longer trusts the hub's certificate {ours}"
    ) in result.out
    assert polling_entries(tentacle) == [("https://elsewhere:10943/", other)]
    assert not any(p.matches(ours) for p in agent_config(tentacle).trusted)


@pytest.mark.parametrize("name", ["", "   "])
async def test_a_blank_name_is_refused_before_the_hub_is_contacted(
    tentacle: TentacleCli, name: str
) -> None:
    AgentProcess(tentacle)
    before = agent_config(tentacle)
    result = await asyncio.to_thread(
        tentacle.fails,
        "register-worker", "--instance", "agent", "--server", "https://127.0.0.1:9/",
        "--apikey", "API-" + "Q" * 30, "--workerpool", "Default Worker Pool", "--name", name,
    )  # fmt: skip
    assert result.err.strip() == (
        f"error: --name {name!r}: expected the worker's name on the hub "
        "(leave --name out for this machine's name)"
    )
    assert agent_config(tentacle) == before


def listening_args(hub: RunningHub, name: str) -> list[str]:
    return ["register-worker", "--instance", "agent", *hub_args(hub), "--workerpool",
            "Default Worker Pool", "--name", name, "--publicHostName", "127.0.0.1",
            # the test's agent listens on port 0 (any free one): a port the hub accepts
            "--tentacle-comms-port", "10933"]  # fmt: skip


async def test_registering_as_listening_an_instance_that_does_not_listen_needs_force(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    """The hub would dial an address the agent never serves: refused, also for a polling
    instance switching to listening, unless --force."""
    AgentProcess(tentacle)
    await tentacle_ok(tentacle, *polling_args(hub, "quiet"))
    await asyncio.to_thread(tentacle.ok, "configure", "--instance", "agent", "--noListen", "true")
    before = agent_config(tentacle)
    [polling] = await hub.api.get("/api/workers/all")
    refused = await tentacle_fails(tentacle, *listening_args(hub, "quiet"))
    assert refused.err.strip() == (
        "error: instance agent does not listen (NoListen is true), so the hub could never "
        "dial it: listen with `tentacle configure --instance agent --noListen false` first, "
        "or register it as polling (--comms-style TentacleActive), or --force"
    )
    assert agent_config(tentacle) == before
    assert await hub.api.get("/api/workers/all") == [polling]
    await tentacle_ok(tentacle, *listening_args(hub, "quiet"), "--force")
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Endpoint"]["CommunicationStyle"] == "TentaclePassive"


async def test_deregistering_says_a_running_agent_keeps_the_hub_until_restarted(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    """The agent reads its trust and polling servers when it starts: deregistering
    while it runs says so, and says nothing of it when no agent runs."""
    agent = AgentProcess(tentacle)
    await tentacle_ok(tentacle, *listening_args(hub, "running"))
    agent.start()
    try:
        result = await tentacle_ok(
            tentacle, "deregister-worker", "--instance", "agent", *hub_args(hub)
        )
    finally:
        agent.stop()
    assert (
        f"The agent of this instance (pid {agent.process.pid}) still trusts and polls "  # type: ignore[union-attr]
        "the hub as it did when it started: stop or restart it"
    ) in result.out
    await tentacle_ok(tentacle, *listening_args(hub, "running"))
    stopped = await tentacle_ok(
        tentacle, "deregister-worker", "--instance", "agent", *hub_args(hub)
    )
    assert "Deregistered running" in stopped.out
    assert "The agent of this instance" not in stopped.out
