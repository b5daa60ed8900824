"""The metric objects on their own: exit code classes, bounded labels, the bounded
workspace walk, the --metrics address, the heartbeat."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.errors import CallError
from agent.observability.endpoint import parse_address
from agent.observability.heartbeat import HEARTBEAT_FILE, Heartbeat, file_age
from agent.observability.metrics import (
    OTHER,
    AgentMetrics,
    HubMetrics,
    WorkspaceSize,
    exit_class,
)
from agent.protocol.calls import IncomingCall, Reply
from agent.protocol.services import ExitCode
from agent.services.router import Router


@pytest.mark.parametrize(
    ("code", "expected"),
    [(0, "success"), (1, "failure"), (255, "failure"), (-9, "failure"),
     (ExitCode.CANCELLED, "cancelled"), (ExitCode.TIMEOUT, "mutex_timeout"),
     (ExitCode.LAUNCH_FAILED, "launch_failed"), (ExitCode.FATAL, "agent_error"),
     (ExitCode.UNKNOWN_RESULT, "unknown_result")],
)  # fmt: skip
def test_exit_code_classes(code: int, expected: str) -> None:
    assert exit_class(code) == expected


def test_each_object_has_its_own_registry_never_the_global_one(tmp_path: Path) -> None:
    one, two = AgentMetrics(tmp_path), AgentMetrics(tmp_path)
    one.scripts_started.inc()
    assert one.registry is not two.registry
    assert two.registry.get_sample_value("tentacle_agent_scripts_started_total") == 0
    assert REGISTRY.get_sample_value("tentacle_agent_scripts_started_total") is None
    hub = HubMetrics(("Queued", "Success"), 5)
    assert hub.registry.get_sample_value("tentacle_hub_task_cap") == 5


def test_every_name_is_prefixed_and_parses(tmp_path: Path) -> None:
    text = generate_latest(AgentMetrics(tmp_path, tmp_path).registry).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names, text
    assert all(name.startswith("tentacle_agent_") for name in names), names
    hub = generate_latest(HubMetrics(("Queued",), 1).registry).decode()
    assert all(f.name.startswith("tentacle_hub_") for f in text_string_to_metric_families(hub))


async def test_calls_to_names_not_served_share_one_label(tmp_path: Path) -> None:
    metrics = AgentMetrics(tmp_path)
    router = Router(metrics)

    async def echo(call: IncomingCall) -> Reply:
        return Reply({})

    router.add("files", 1, {"upload": echo})
    await router(IncomingCall("files", "upload", {}, None, "AB"))
    for service, method in [("files", "nope"), ("garbage-1", "x"), ("garbage-2", "y")]:
        with pytest.raises(CallError):
            await router(IncomingCall(service, method, {}, None, "AB"))
    count = "tentacle_agent_call_duration_seconds_count"
    get = metrics.registry.get_sample_value
    assert get(count, {"service": "files", "method": "upload"}) == 1
    assert get(count, {"service": OTHER, "method": OTHER}) == 3
    assert get(count, {"service": "garbage-1", "method": "x"}) is None


def test_unknown_health_statuses_count_as_other() -> None:
    metrics = HubMetrics(("Queued", "Executing"), 5)
    metrics.set_workers({"Healthy": 2, "Made-up": 1, "Another": 4})
    metrics.set_tasks({"Queued": 3, "Executing": 1, "NotAState": 9}, "Queued")
    get = metrics.registry.get_sample_value
    assert get("tentacle_hub_workers", {"status": "Healthy"}) == 2
    assert get("tentacle_hub_workers", {"status": OTHER}) == 5
    assert get("tentacle_hub_workers", {"status": "Unavailable"}) == 0
    assert get("tentacle_hub_tasks", {"state": "NotAState"}) is None
    assert get("tentacle_hub_task_queue_length") == 3


def test_the_workspace_walk_is_bounded_and_reused(tmp_path: Path) -> None:
    for number in range(30):
        folder = tmp_path / f"w{number}"
        folder.mkdir()
        (folder / "out").write_bytes(b"x" * 100)
    os.symlink("/", tmp_path / "w0" / "root")  # never followed
    now = [0.0]
    whole = WorkspaceSize(tmp_path, limit=1000, reuse=30.0, clock=lambda: now[0])
    assert whole.measure() == (3000, False)
    (tmp_path / "w1" / "more").write_bytes(b"y" * 50)
    assert whole.measure() == (3000, False)  # reused within 30 s
    now[0] = 31.0
    assert whole.measure() == (3050, False)
    bounded = WorkspaceSize(tmp_path, limit=10)
    size, truncated = bounded.measure()
    assert truncated
    assert size < 3050
    assert WorkspaceSize(tmp_path / "missing").measure() == (0, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::1]:0", ("::1", 0)),
     (" localhost:65535 ", ("localhost", 65535))],
)  # fmt: skip
def test_metrics_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "9100", ":9100", "[]:9100", "host:", "host:-1",
                                  "host:65536", "host:http"])  # fmt: skip
def test_bad_metrics_addresses_name_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not HOST:PORT \(e\.g\. 127\.0\.0\.1:9100"):
        parse_address(text)


def test_the_heartbeat_touches_its_file_and_tells_its_age(tmp_path: Path) -> None:
    metrics = AgentMetrics(tmp_path)
    beat = metrics.heartbeat
    assert beat.age() == float("inf")
    assert file_age(tmp_path / HEARTBEAT_FILE) is None
    past = time.time() - 100
    (tmp_path / HEARTBEAT_FILE).touch()
    os.utime(tmp_path / HEARTBEAT_FILE, (past, past))
    beat.beat()
    age = file_age(tmp_path / HEARTBEAT_FILE)
    assert age is not None
    assert age < 50
    assert beat.age() < 50
    assert (
        metrics.registry.get_sample_value("tentacle_agent_heartbeat_timestamp_seconds") == beat.last
    )


def test_a_heartbeat_file_that_cannot_be_written_does_not_stop_the_beat(tmp_path: Path) -> None:
    os.symlink(tmp_path / "elsewhere", tmp_path / HEARTBEAT_FILE)  # O_NOFOLLOW refuses it
    beat = Heartbeat(tmp_path / HEARTBEAT_FILE)
    beat.beat()
    beat.beat()
    assert beat.age() < 50
    assert not (tmp_path / "elsewhere").exists()


def test_readiness_says_why_not(tmp_path: Path) -> None:
    metrics = AgentMetrics(tmp_path)
    assert metrics.not_ready() == "the agent is not listening yet"
    metrics.polls = True
    assert "no polling connection" in (metrics.not_ready() or "")
    metrics.opened("polling")
    assert metrics.not_ready() is None
    assert metrics.registry.get_sample_value("tentacle_agent_ready") == 1
    metrics.closed("polling", silent=True)
    assert metrics.registry.get_sample_value(
        "tentacle_agent_heartbeat_misses_total", {"kind": "polling"}) == 1  # fmt: skip
    metrics.listening, metrics.stopping = True, True
    assert metrics.not_ready() == "the agent is stopping"
