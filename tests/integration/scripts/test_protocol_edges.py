"""docs/protocol.md §8, scripts/1, as a peer written from the document would try it."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from agent.client import AgentClient
from agent.errors import RemoteError
from tests.helpers.eventually import eventually
from tests.integration.scripts.conftest import Scripts

OCCURRED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


async def test_start_returns_the_log_from_line_1(scripts: Scripts) -> None:
    status = await scripts.start("echo one; echo two; echo three >&2", ticket="from-1",
                                 DurationToWaitForScriptToFinish=30)  # fmt: skip
    assert (status["State"], status["ExitCode"], status["NextLogSequence"]) == ("Complete", 0, 3)
    assert [(e["Source"], e["Sequence"], e["Count"], e["Text"], e["Length"]) for e in status["Logs"]
            ] == [("stdout", 1, 2, "one\ntwo", 7), ("stderr", 3, 1, "three", 5)]  # fmt: skip
    for entry in status["Logs"]:
        assert OCCURRED.fullmatch(entry["Occurred"]), entry["Occurred"]
        assert datetime.datetime.fromisoformat(entry["Occurred"]).utcoffset() == datetime.timedelta(
            0
        )


async def test_exit_code_is_null_until_complete(scripts: Scripts, tmp_path: Path) -> None:
    release = tmp_path / "release"
    started = await scripts.start(f'echo up; while [ ! -e "{release}" ]; do sleep 0.05; done')
    assert started["ExitCode"] is None  # the default wait is 0: the answer comes at once
    assert started["State"] in ("Pending", "Running")

    async def printed() -> bool:
        return bool((await scripts.status(started["Ticket"]))["Logs"])

    await eventually(printed, "the script printed")
    running = await scripts.status(started["Ticket"])
    assert (running["State"], running["ExitCode"]) == ("Running", None)
    release.touch()
    assert (await scripts.wait_complete(started["Ticket"]))["ExitCode"] == 0


async def test_streamed_logs_are_the_runs_bytes_back_to_back(scripts: Scripts) -> None:
    started = await scripts.start("printf 'a\\nb\\n'; printf 'caf\\xc3\\xa9\\n' >&2; echo c",
                                  DurationToWaitForScriptToFinish=30)  # fmt: skip
    channel = await scripts.client.connect()
    params = {"ScriptTicket": started["Ticket"], "LastLogSequence": 0, "StreamLogs": True}
    result = await channel.call("scripts", "status", params)
    assert result.stream is not None
    data = b"".join([chunk async for chunk in result.stream])
    runs = result.value["Logs"]
    assert all("Text" not in run for run in runs)
    # a script that has ended is numbered source by source: stdout first
    assert [(r["Source"], r["Sequence"], r["Count"], r["Length"]) for r in runs] == [
        ("stdout", 1, 3, 5),
        ("stderr", 4, 1, 5),
    ]
    assert data == b"a\nb\nc" + "café".encode()  # no separator between runs


@pytest.mark.parametrize("method", ["status", "cancel"])
async def test_last_log_sequence_is_required(scripts: Scripts, method: str) -> None:
    for params, message in [
        ({"ScriptTicket": "t"}, "'LastLogSequence' as int, got None"),
        ({"ScriptTicket": "t", "LastLogSequence": "3"}, "'LastLogSequence' as int"),
        ({"ScriptTicket": "t", "LastLogSequence": -1}, "LastLogSequence must be 0 or"),
    ]:
        with pytest.raises(RemoteError) as caught:
            await scripts.client.call("scripts", method, params)
        assert caught.value.kind == "bad_params"
        assert message in str(caught.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [("../outside", "without '.' or '..'"), ("/etc/passwd", "relative path"),
     ("a/../../b", "without '.' or '..'"), ("a//b", "non-empty parts"), ("", "relative path"),
     ("rc", "the workspace's own files"), ("state.json", "the workspace's own files"),
     ("script.sh", "the workspace's own files")],
)  # fmt: skip
async def test_unsafe_file_names_are_refused(
    scripts: Scripts, tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(RemoteError) as caught:
        await scripts.run("true", files=[(name, tmp_path / "f")])
    assert caught.value.kind == "bad_params"
    assert message in str(caught.value)
    assert not (tmp_path.parent / "outside").exists()


async def test_files_with_slashes_land_in_subfolders_of_the_workspace(
    scripts: Scripts, tmp_path: Path
) -> None:
    source = tmp_path / "data"
    source.write_text("x")
    files = [("a/b/data", source), ("c\\data", source)]  # a backslash counts as /
    code, lines = await scripts.run("find . -name data | sort", files=files)
    assert code == 0
    assert [line.text for line in lines if line.source == "stdout"][:2] == [
        "./a/b/data",
        "./c/data",
    ]


async def test_shells_name_the_syntaxes(scripts: Scripts) -> None:
    client: AgentClient = scripts.client
    found = await client.call("capabilities", "get", {})
    assert {"bash", "sh", "python"} <= set(found["Shells"])
    assert "python3" not in found["Shells"]


@pytest.mark.parametrize("ticket", ["_a", ".a", "-a", "a" * 129, "café", "a b", "a/b", ""])
async def test_the_ticket_rule_is_the_documented_one(scripts: Scripts, ticket: str) -> None:
    with pytest.raises(RemoteError) as caught:
        await scripts.status(ticket)
    assert caught.value.kind == "bad_params"
    assert "starting with a letter or digit" in str(caught.value)


async def test_tickets_the_rule_allows(scripts: Scripts) -> None:
    for ticket in ["a" * 128, "9._-", "A"]:
        assert (await scripts.status(ticket))["ExitCode"] == -45
