"""`tentacle client run-script`: live output, the script's exit code, cancel, resume."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from agent.client import AgentClient, Endpoint
from tests.helpers.agent import AgentProcess
from tests.integration.scripts.conftest import Scripts


def run_script(agent: AgentProcess, script: Path, *args: str) -> list[str]:
    return ["client", "--instance", "hub", "run-script", "--endpoint", agent.url,
            "--thumbprint", agent.thumbprint, *args, str(script)]  # fmt: skip


def test_output_goes_to_stdout_and_stderr_and_the_exit_code_is_the_scripts(
    agent: AgentProcess, tmp_path: Path
) -> None:
    script = tmp_path / "deploy.sh"
    script.write_text('echo "hello $1"; echo "warning" >&2; exit 4\n')
    result = agent.cli.run(*run_script(agent, script), "--", "world")
    assert (result.code, result.out, result.err) == (4, "hello world\n", "warning\n")


def test_python_scripts_and_files(agent: AgentProcess, tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text("print(open('data.txt').read().strip())\n")
    data = tmp_path / "data.txt"
    data.write_text("from a file\n")
    result = agent.cli.run(*run_script(agent, script, "--syntax", "python", "--file", str(data)))
    assert (result.code, result.out) == (0, "from a file\n")


def test_a_reserved_code_exits_1_naming_it(agent: AgentProcess, tmp_path: Path) -> None:
    async def hold_the_mutex() -> str:
        async with AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings()) as c:
            status = await Scripts(c).start(f'while [ ! -e "{tmp_path}/go" ]; do sleep 0.05; done')
            await Scripts(c).wait_for_state(status["Ticket"], "Running")
            return str(status["Ticket"])

    asyncio.run(hold_the_mutex())
    script = tmp_path / "queued.sh"
    script.write_text("echo never\n")
    failure = agent.cli.fails(*run_script(agent, script, "--mutex-timeout", "0.1"))
    assert "timed out waiting for the isolation mutex (-44)" in failure.err
    (tmp_path / "go").touch()


def test_ctrl_c_cancels_the_remote_script(agent: AgentProcess, tmp_path: Path) -> None:
    script = tmp_path / "long.sh"
    script.write_text("echo started; sleep 1000\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", *run_script(agent, script, "--ticket", "interrupted")],
        env=agent.cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 128 + 15
    assert not (agent.home / "Work" / "interrupted").exists()


def test_the_same_ticket_resumes_the_running_script(agent: AgentProcess, tmp_path: Path) -> None:
    release = tmp_path / "release"

    async def start() -> None:
        async with AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings()) as c:
            await Scripts(c).start(
                f'echo first; while [ ! -e "{release}" ]; do sleep 0.05; done; echo second; exit 5',
                ticket="resumable",
            )

    asyncio.run(start())
    script = tmp_path / "other.sh"
    script.write_text("echo a different body is ignored\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", *run_script(agent, script, "--ticket", "resumable")],
        env=agent.cli.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline() == "first\n"
    release.touch()
    assert process.stdout.read() == "second\n"
    assert process.wait(timeout=60) == 5


def test_a_mistyped_option_is_an_error_not_a_script_argument(
    agent: AgentProcess, tmp_path: Path
) -> None:
    script = tmp_path / "args.sh"
    script.write_text('echo "args: $*"\n')
    typo = agent.cli.fails(*run_script(agent, script), "--tiket", "x", code=2)
    assert "error: No such option '--tiket'." in typo.err
    assert "--ticket" in typo.err.splitlines()[-1]  # click suggests the right one
    passed = agent.cli.run(*run_script(agent, script), "--", "--tiket", "-x")
    assert (passed.code, passed.out) == (0, "args: --tiket -x\n")


def test_a_finished_ticket_run_again_says_so_and_exits_with_its_code(
    agent: AgentProcess, tmp_path: Path
) -> None:
    script = tmp_path / "once.sh"
    script.write_text("echo ran; exit 3\n")
    first = agent.cli.run(*run_script(agent, script, "--ticket", "once"))
    assert (first.code, first.out, first.err) == (3, "ran\n", "")
    again = agent.cli.run(*run_script(agent, script, "--ticket", "once"))
    assert (again.code, again.out) == (3, "")
    assert again.err == (
        "Script once had already finished, with exit code 3; a ticket runs at most once, "
        "and its log is no longer kept on the agent\n"
    )
    silent = tmp_path / "silent.sh"
    silent.write_text("exit 0\n")
    fresh = agent.cli.run(*run_script(agent, silent, "--ticket", "silent"))
    assert (fresh.code, fresh.out, fresh.err) == (0, "", "")  # ran now: nothing to say
