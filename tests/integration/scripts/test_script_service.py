"""The script service on a real agent: real bash, real processes, real files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.errors import RemoteError
from agent.scripts.runner import is_zombie
from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually
from tests.integration.scripts.conftest import Scripts, texts


@pytest.mark.parametrize("code", [0, 1, 3, 255])
async def test_the_scripts_own_exit_code(scripts: Scripts, code: int) -> None:
    exit_code, lines = await scripts.run(f"echo ran; exit {code}")
    assert exit_code == code
    assert texts(lines) == ["ran"]


async def test_arguments_arrive_as_separate_argv_entries(scripts: Scripts) -> None:
    arguments = ["two words", "it's", '"quoted"', "$HOME", "; rm -rf /", ""]
    code, lines = await scripts.run('for a in "$@"; do printf "<%s>\\n" "$a"; done',
                                    arguments=arguments)  # fmt: skip
    assert code == 0
    assert texts(lines) == [f"<{a}>" for a in arguments]


@pytest.mark.parametrize(
    ("syntax", "body"),
    [("sh", 'echo "$0" | grep -q script.sh && echo ok'),
     ("python", "import sys; print('ok', sys.argv[1:])")],
)  # fmt: skip
async def test_other_syntaxes(scripts: Scripts, syntax: str, body: str) -> None:
    code, lines = await scripts.run(body, syntax=syntax, arguments=["x"])
    assert code == 0
    assert texts(lines)[0].startswith("ok")


async def test_signals_python_ignores_reach_scripts_at_their_defaults(scripts: Scripts) -> None:
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal survives exec: a pipe's
    # writer would get "Broken pipe" errors instead of ending quietly, as in a shell
    code, lines = await scripts.run(
        'yes | head -n 1; echo "pipe ${PIPESTATUS[0]}"; grep -E "^Sig(Ign|Blk)" /proc/self/status'
    )
    assert code == 0
    shown = texts(lines)
    assert shown[:2] == ["y", "pipe 141"], shown  # 128 + SIGPIPE
    ignored = int(next(line for line in shown if line.startswith("SigIgn")).split()[1], 16)
    assert not ignored & (1 << (13 - 1) | 1 << (25 - 1)), shown  # SIGPIPE 13, SIGXFSZ 25


async def test_files_sent_alongside(scripts: Scripts, tmp_path: Path) -> None:
    first, second = tmp_path / "config.json", tmp_path / "empty"
    first.write_text('{"answer": 42}')
    second.write_bytes(b"")
    code, lines = await scripts.run(
        "cat config.json; echo; wc -c < sub/empty",
        files=[("config.json", first), ("sub/empty", second)],
    )
    assert code == 0
    assert texts(lines) == ['{"answer": 42}', "0"]


async def test_environment_names_the_instance(scripts: Scripts, agent: AgentProcess) -> None:
    code, lines = await scripts.run(
        'echo "$TentacleHome|$TentacleInstanceName|$TentacleVersion|$PWD|${SSH_CLIENT-unset}|'
        '$(stat -c %a .)"'
    )
    assert code == 0
    [line] = texts(lines)
    home, name, version, cwd, ssh, mode = line.split("|")
    assert (home, name, ssh, mode) == (str(agent.home), "agent", "unset", "700")
    assert version
    assert Path(cwd).parent == agent.home / "Work"


async def test_stdout_stderr_and_sequence_numbers(scripts: Scripts) -> None:
    code, lines = await scripts.run("echo out; echo err >&2")
    assert code == 0
    assert [(line.source, line.text) for line in lines] == [("stdout", "out"), ("stderr", "err")]
    assert [line.sequence for line in lines] == [1, 2]


async def test_logs_resume_from_a_sequence(scripts: Scripts) -> None:
    started = await scripts.start("for i in $(seq 10); do echo line $i; done",
                                  DurationToWaitForScriptToFinish=30)  # fmt: skip
    assert started["State"] == "Complete"
    ticket = started["Ticket"]
    later = await scripts.status(ticket, last=4)
    [entry] = later["Logs"]
    assert entry["Sequence"] == 5
    assert entry["Text"].split("\n") == [f"line {i}" for i in range(5, 11)]
    assert later["NextLogSequence"] == 10
    assert (await scripts.status(ticket, last=10))["Logs"] == []


async def test_long_lines_are_split_and_bad_utf8_replaced(scripts: Scripts) -> None:
    code, lines = await scripts.run(
        "head -c 40000 /dev/zero | tr '\\0' x; echo; printf 'caf\\xe9\\n'"
    )
    assert code == 0
    assert [len(t) for t in texts(lines)] == [16384, 16384, 7232, 4]
    assert texts(lines)[-1] == "caf\ufffd"


async def test_many_scripts_run_concurrently(scripts: Scripts, tmp_path: Path) -> None:
    # each script waits for every other one's flag: only concurrent runs can pass
    body = (
        'touch "$1/$2"; for i in $(seq 400); do '
        '[ "$(ls "$1" | wc -l)" -ge 5 ] && exit 0; sleep 0.05; done; exit 1'
    )
    runs = [scripts.run(body, arguments=[str(tmp_path), str(n)], isolation="none")
            for n in range(5)]  # fmt: skip
    assert [code for code, _ in await asyncio.gather(*runs)] == [0] * 5


async def test_start_is_idempotent_per_ticket(scripts: Scripts, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    body = f'echo run >> "{counter}"'
    first = await scripts.start(body, ticket="Deploy-42", DurationToWaitForScriptToFinish=30)
    again = await scripts.start(body, ticket="deploy-42", DurationToWaitForScriptToFinish=30)
    assert first["ExitCode"] == again["ExitCode"] == 0
    concurrent = await asyncio.gather(*(
        scripts.start(body, ticket="DEPLOY-43", DurationToWaitForScriptToFinish=30)
        for _ in range(8)
    ))  # fmt: skip
    assert {status["ExitCode"] for status in concurrent} == {0}
    assert counter.read_text() == "run\nrun\n"


async def test_an_unknown_ticket_is_complete_with_minus_45(scripts: Scripts) -> None:
    status = await scripts.status("never-started", last=12)
    assert status == {"Ticket": "never-started", "State": "Complete", "ExitCode": -45,
                      "Logs": [], "NextLogSequence": 0, "MoreLogs": False}  # fmt: skip


async def test_bad_requests_are_refused(scripts: Scripts) -> None:
    for params, message in [
        ({"ScriptTicket": "../escape"}, "invalid script ticket"),
        ({"Syntax": "perl"}, "Syntax must be one of"),
        ({"Isolation": "partial"}, "Isolation must be full or none"),
        ({"Arguments": [1, 2]}, "Arguments must be a list of strings"),
        ({"IsolationMutexTimeout": -1}, "must be a number of seconds"),
    ]:
        with pytest.raises(RemoteError) as caught:
            await scripts.client.call(
                "scripts", "start", {"ScriptTicket": "t1", "ScriptBody": "true", **params}
            )
        assert caught.value.kind == "bad_params"
        assert message in str(caught.value)


async def test_complete_removes_the_workspace(scripts: Scripts, agent: AgentProcess) -> None:
    started = await scripts.start("echo hi", ticket="to-remove", DurationToWaitForScriptToFinish=30)
    assert (agent.home / "Work" / "to-remove").is_dir()
    await scripts.client.call("scripts", "complete", {"ScriptTicket": started["Ticket"]})
    assert not (agent.home / "Work" / "to-remove").exists()
    assert (await scripts.status("to-remove"))["ExitCode"] == -45
    await scripts.client.call("scripts", "complete", {"ScriptTicket": "to-remove"})  # no error


async def test_cancel_with_a_grandchild_holding_stdout(scripts: Scripts, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f'sleep 1000 & echo $! > "{pids}"; echo started; sleep 1000'
    started = await scripts.start(body, Grace=5)
    ticket = started["Ticket"]
    await scripts.wait_for_output(ticket)
    await scripts.cancel(ticket)
    status = await scripts.wait_complete(ticket)
    assert status["ExitCode"] == 128 + 15
    grandchild = int(pids.read_text())
    # SIGKILLed when the script ended, but a signal is delivered when the process next
    # runs, which on a loaded machine can be after the status says Complete
    await eventually(
        lambda: not Path(f"/proc/{grandchild}").exists() or is_zombie(grandchild),
        f"the grandchild {grandchild} holding stdout killed",
    )


async def test_a_script_ignoring_sigterm_is_killed_after_the_grace(scripts: Scripts) -> None:
    started = await scripts.start(
        "trap '' TERM; echo ready; while true; do sleep 0.05; done", Grace=1
    )
    ticket = started["Ticket"]
    await scripts.wait_for_output(ticket)
    await scripts.cancel(ticket)
    status = await scripts.wait_complete(ticket)
    assert status["ExitCode"] == 128 + 9
    notes = [e["Text"] for e in (await scripts.status(ticket))["Logs"] if e["Source"] == "debug"]
    assert any("SIGKILL after 1.0 s" in note for note in notes)


async def test_output_of_100_mib_keeps_the_agent_small(
    scripts: Scripts, agent: AgentProcess
) -> None:
    import psutil

    assert agent.process is not None
    rss_before = psutil.Process(agent.process.pid).memory_info().rss
    body = "yes \"$(printf '%063d' 0)\" | head -c 104857600"  # 64-byte lines
    count = 0
    size = 0

    def consume(chunk: LogChunk) -> None:
        nonlocal count, size
        if chunk.source == "stdout":
            count += len(chunk.lines)
            size += len(chunk.text) + 1

    from agent.client.scripts import LogChunk, ScriptRequest, execute_script

    outcome = await execute_script(scripts.client, ScriptRequest(body), consume)
    assert outcome.exit_code == 0
    assert (count, size) == (1638400, 100 * 1024 * 1024)
    growth = psutil.Process(agent.process.pid).memory_info().rss - rss_before
    assert growth < 64 * 1024 * 1024, f"agent grew by {growth / 2**20:.0f} MiB"
