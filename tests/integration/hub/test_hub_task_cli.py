"""hub run, task, tasks and cancel as a user runs them: the real `tentacle` in a child
process, a real hub, real agents (one listening, one polling).

Scripts that must still be running when the test acts (Ctrl-C, a cut, a restart)
write a marker file once started and wait for a release file the test creates:
the test waits on those files, never on a clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import pty
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.hub.rules.adhoc import MAX_PARALLELISM
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import Result, TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.forwarder import Forwarder
from tests.helpers.hub import RunningHub, hub_args, running_hub
from tests.integration.hub.test_health_checks import free_port, listening_worker, polling_worker

T = TypeVar("T")

HANG = 90.0  # seconds: a bound for a hang, never reached when things work
POOL = "Default Worker Pool"

# started.<worker> once it runs, then waits (bounded) for the file "release"
WAITING = """\
echo "started on $2"
touch "$1/started.$2"
i=0
while [ ! -e "$1/release" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done
echo "released on $2"
"""


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path) as running:
        yield running


@pytest.fixture
async def workers(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> AsyncIterator[list[AgentProcess]]:
    """web-1 listening and web-2 polling, both Healthy in the default pool."""
    one = await listening_worker(hub, tentacle, name="web-1")
    two = await polling_worker(hub, TentacleCli(tmp_path / "two"), name="web-2")
    try:
        for name in ("web-1", "web-2"):
            await healthy(hub, name)
        yield [one, two]
    finally:
        one.stop()
        two.stop()


async def healthy(hub: RunningHub, name: str) -> None:
    async def check() -> bool:
        [worker] = await hub.api.get(f"/api/workers/all?name={name}")
        return bool(worker["HealthStatus"] == "Healthy")

    await eventually(check, f"{name} became Healthy", timeout=HANG)


async def tentacle_hub(cli: TentacleCli, hub: RunningHub, verb: str, *args: str) -> Result:
    return await asyncio.to_thread(cli.run, "hub", verb, *hub_args(hub), *args)


def one_error_line(result: Result) -> str:
    [line] = result.err.strip().splitlines()
    assert line.startswith("error: "), result.err
    assert "Traceback" not in result.err
    return line


def script(tmp_path: Path, text: str, name: str = "script.sh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def set_variable(name: str, value: str) -> str:
    """The service message set_octopusvariable prints, as a script line."""
    from agent.calamari.service_messages import format_message

    return f'echo "{format_message("setVariable", {"name": name, "value": value})}"\n'


async def task_of(hub: RunningHub, task_id: str) -> dict[str, Any]:
    return dict(await hub.api.get(f"/api/tasks/{task_id}"))


def follower(cli: TentacleCli, hub: RunningHub, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """`tentacle hub ARGS` in the background (stdin not a terminal unless given)."""
    verb, *rest = args
    options: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                               "stderr": subprocess.PIPE, "text": True, **popen}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", verb, *hub_args(hub), *rest],
        env=cli.env,
        **options,
    )


@contextlib.contextmanager
def reaped(process: subprocess.Popen[str]) -> Any:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def exists(path: Path, what: str) -> None:
    await eventually(path.exists, what, timeout=HANG)


# --- the happy path ---------------------------------------------------------------------------


async def test_run_on_all_workers_prefixes_each_line_and_shows_output_variables(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    body = 'echo "hello $1"\necho "second line"\n' + set_variable("Greeting", "hi")
    path = script(tmp_path, body)
    result = await tentacle_hub(
        tentacle, hub, "run", "--pool", POOL, "--all-workers", str(path), "--", "world"
    )
    assert result.code == 0, result
    lines = result.out.splitlines()
    task_id = lines[0].split(":")[0]
    assert task_id.startswith("ServerTasks-"), result.out
    for worker in ("web-1", "web-2"):
        assert f"[{worker}] hello world" in lines, result.out
        assert lines.index(f"[{worker}] hello world") < lines.index(f"[{worker}] second line")
        assert f"  [{worker}] Greeting = hi" in lines, result.out
        assert sum(line == f"[{worker}] hello world" for line in lines) == 1  # never twice
        # its end once, after its lines (not while it was Pending or Running)
        assert [line for line in lines if line.startswith(f"[{worker}] finished: ")] == [
            f"[{worker}] finished: Success"
        ], result.out
        assert lines.index(f"[{worker}] finished: Success") > lines.index(f"[{worker}] second line")
    assert "##octopus" not in result.out  # the service message is not a line for people
    assert lines.index("Output variables:") > lines.index("[web-1] second line")
    assert lines[-1].startswith(f"{task_id} Success in "), result.out
    task = await task_of(hub, task_id)
    assert task["Name"] == "AdHocScript"
    assert task["Arguments"]["TargetAllWorkers"] is True
    assert task["Arguments"]["ScriptArguments"] == ["world"]

    # the task as the other commands show it
    listed = await tentacle_hub(tentacle, hub, "tasks")
    assert listed.code == 0, listed
    assert any(line.split()[:3] == [task_id, "AdHocScript", "Success"] for line in
               listed.out.splitlines()), listed.out  # fmt: skip
    as_json = await tentacle_hub(tentacle, hub, "tasks", "--format", "json", "--state", "success")
    assert task_id in [t["Id"] for t in as_json.json()]
    shown = await tentacle_hub(tentacle, hub, "task", task_id)
    assert shown.code == 0, shown
    assert "State:" in shown.out
    assert "Success" in shown.out
    assert "  [web-2] hello world" in shown.out.splitlines()
    again = await tentacle_hub(tentacle, hub, "task", task_id.removeprefix("ServerTasks-"),
                               "--follow")  # fmt: skip
    assert again.code == 0, again
    assert again.out.splitlines().count("[web-1] hello world") == 1


async def test_one_worker_by_name_and_a_python_script(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    path = script(tmp_path, "import sys\nprint('from python', sys.argv[1:])\n", "hello.py")
    result = await tentacle_hub(
        tentacle, hub, "run", "--pool", POOL, "--worker", "web-2", str(path), "--", "a", "b"
    )
    assert result.code == 0, result
    assert "[web-2] from python ['a', 'b']" in result.out.splitlines(), result.out
    assert "[web-1]" not in result.out


async def test_a_failing_step_exits_1_with_one_line_naming_it(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    path = script(tmp_path, 'echo "about to fail"\nexit 3\n')
    result = await tentacle_hub(tentacle, hub, "run", "--pool", POOL, "--worker", "web-1",
                                str(path))  # fmt: skip
    assert result.code == 1, result
    assert "[web-1] about to fail" in result.out.splitlines()
    line = one_error_line(result)
    task_id = result.out.split(":")[0]
    assert line.startswith(f"error: {task_id} Failed: "), line
    assert "web-1" in line, line
    assert "3" in line, line
    assert (await task_of(hub, task_id))["State"] == "Failed"


async def test_a_task_past_its_timeout_exits_1_saying_so(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    path = script(tmp_path, WAITING)  # never released: only the timeout ends it
    args = ["--pool", POOL, "--worker", "web-1", "--timeout", "1", str(path)]
    result = await tentacle_hub(tentacle, hub, "run", *args, "--", str(tmp_path), "web-1")
    assert result.code == 1, result
    task_id = result.out.split(":")[0]
    line = one_error_line(result)
    assert line.startswith(f"error: {task_id} TimedOut: "), line
    assert (await task_of(hub, task_id))["State"] == "TimedOut"


# --- Ctrl-C -----------------------------------------------------------------------------------


async def test_ctrl_c_without_a_terminal_stops_following_and_the_task_goes_on(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    path = script(tmp_path, WAITING)
    with reaped(follower(tentacle, hub, "run", "--pool", POOL, "--worker", "web-1", str(path),
                         "--", str(tmp_path), "web-1")) as running:  # fmt: skip
        await exists(tmp_path / "started.web-1", "the script started")
        assert running.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(running.stdout.readline), HANG)
        task_id = first.split(":")[0]
        running.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(asyncio.to_thread(running.communicate), HANG)
    assert running.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert f"Stopped following {task_id}; it goes on on the hub" in err, err
    assert f"tentacle hub task {task_id} --follow" in err, err
    assert "Cancel" not in out  # no question without a terminal
    assert (await task_of(hub, task_id))["State"] == "Executing"

    # followed again: from its first line to its end, each line once
    again = follower(tentacle, hub, "task", task_id, "--follow")
    with reaped(again):
        assert again.stdout is not None
        await asyncio.wait_for(asyncio.to_thread(again.stdout.readline), HANG)  # Following ...
        await asyncio.wait_for(asyncio.to_thread(again.stdout.readline), HANG)  # started on
        (tmp_path / "release").touch()
        out, err = await asyncio.wait_for(asyncio.to_thread(again.communicate), HANG)
    assert again.returncode == 0, (out, err)
    assert "[web-1] released on web-1" in out.splitlines(), out
    assert (await task_of(hub, task_id))["State"] == "Success"


async def test_ctrl_c_at_a_terminal_asks_and_cancel_cancels_the_task(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    path = script(tmp_path, WAITING)
    controller, terminal = pty.openpty()
    try:
        running = follower(
            tentacle, hub, "run", "--pool", POOL, "--all-workers", str(path), "--",
            str(tmp_path), "any", stdin=terminal, stdout=terminal, stderr=terminal,
        )  # fmt: skip
        with reaped(running):
            os.close(terminal)
            terminal = -1
            screen = Screen(controller)
            await exists(tmp_path / "started.any", "a step started")
            await screen.until("started on")
            running.send_signal(signal.SIGINT)
            await screen.until("[cancel/stop]")
            os.write(controller, b"cancel\n")
            code = await asyncio.wait_for(asyncio.to_thread(running.wait), HANG)
            await screen.until("Canceled")
        assert code == 1, screen.text
        assert "Cancel requested" in screen.text
        task_id = screen.text.split("ServerTasks-", 1)[1].split(":")[0]
        task = await task_of(hub, f"ServerTasks-{task_id}")
        assert task["State"] == "Canceled", task
        assert f"error: ServerTasks-{task_id} Canceled" in screen.text, screen.text
        assert not (tmp_path / "release").exists()  # nothing let the scripts finish
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)


async def test_ctrl_c_at_a_terminal_answering_stop_leaves_the_task_running(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    path = script(tmp_path, WAITING)
    controller, terminal = pty.openpty()
    try:
        running = follower(
            tentacle, hub, "run", "--pool", POOL, "--worker", "web-2", str(path), "--",
            str(tmp_path), "web-2", stdin=terminal, stdout=terminal, stderr=terminal,
        )  # fmt: skip
        with reaped(running):
            os.close(terminal)
            terminal = -1
            screen = Screen(controller)
            await exists(tmp_path / "started.web-2", "the step started")
            await screen.until("started on web-2")
            running.send_signal(signal.SIGINT)
            await screen.until("[cancel/stop]")
            os.write(controller, b"\n")  # Enter: the safe answer, stop following
            code = await asyncio.wait_for(asyncio.to_thread(running.wait), HANG)
            await screen.until("--follow")
        assert code == 130, screen.text
        task_id = "ServerTasks-" + screen.text.split("ServerTasks-", 1)[1].split(":")[0]
        assert f"Stopped following {task_id}; it goes on on the hub" in screen.text
        assert (await task_of(hub, task_id))["State"] == "Executing"
        (tmp_path / "release").touch()
        await eventually(
            lambda: task_state_is(hub, task_id, "Success"), "the task succeeded", timeout=HANG
        )
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)


async def task_state_is(hub: RunningHub, task_id: str, state: str) -> bool:
    return (await task_of(hub, task_id))["State"] == state


class Screen:
    """What a command printed on a pseudo-terminal, read as it comes."""

    def __init__(self, controller: int) -> None:
        self.controller = controller
        self.text = ""

    async def until(self, wanted: str) -> None:
        async def read() -> bool:
            while wanted not in self.text:
                try:
                    chunk = await asyncio.to_thread(os.read, self.controller, 4096)
                except OSError:  # the other side closed: all was read
                    return wanted in self.text
                if not chunk:
                    return wanted in self.text
                self.text += chunk.decode(errors="replace").replace("\r\n", "\n")
            return True

        found = await asyncio.wait_for(read(), HANG)
        assert found, f"{wanted!r} never appeared on the terminal:\n{self.text}"


# --- faults: a cut connection, a hub restart, while following ---------------------------------


async def test_a_connection_cut_mid_step_loses_and_repeats_no_line(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    port = int(hub.api.url.rsplit(":", 1)[1])
    forwarder = Forwarder(port, agent_dials=True)  # the follower dials; its bytes arm it
    front = await forwarder.start()
    args = ["--server", f"https://127.0.0.1:{front}/", "--apikey", str(hub.api.key),
            "--server-thumbprint", hub.home.identity().thumbprint]  # fmt: skip
    path = script(tmp_path, 'for i in 1 2 3; do echo "line $i"; done\n' + WAITING +
                  'for i in 4 5 6; do echo "line $i"; done\n')  # fmt: skip
    running = subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", "run", *args, "--pool", POOL,
         "--worker", "web-1", str(path), "--", str(tmp_path), "web-1"],
        env=tentacle.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with reaped(running):
            await exists(tmp_path / "started.web-1", "the script started")
            forwarder.arm("cut")  # the follower's next look is cut off mid-step
            await asyncio.wait_for(forwarder.fired.wait(), HANG)
            (tmp_path / "release").touch()
            out, err = await asyncio.wait_for(asyncio.to_thread(running.communicate), HANG)
    finally:
        await forwarder.stop()
    assert running.returncode == 0, (out, err)
    # (a GET cut on a kept-alive connection is sent again by aiohttp itself, or by the
    # follower after "cannot reach the hub": either way, by the cursor)
    lines = out.splitlines()
    shown = [line for line in lines if line.startswith("[web-1] line ")]
    assert shown == [f"[web-1] line {i}" for i in range(1, 7)], out


async def _in_a_thread(call: Callable[[], T]) -> T:
    """``call()`` in a thread of its own, not in the loop's shared default executor
    (which other waits of the test process may be holding)."""
    own = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return await asyncio.get_running_loop().run_in_executor(own, call)
    finally:
        own.shutdown(wait=False)


async def test_a_hub_restart_while_following_loses_and_repeats_no_line(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    from agent import __version__
    from agent.hub.server import HubServer

    path = script(tmp_path, 'echo "before"\n' + WAITING + 'echo "after"\n')
    running = follower(tentacle, hub, "run", "--pool", POOL, "--worker", "web-1", str(path),
                       "--", str(tmp_path), "web-1")  # fmt: skip
    restarted: HubServer | None = None
    try:
        with reaped(running):
            await exists(tmp_path / "started.web-1", "the script started")
            polling_port = hub.server.polling_port
            await hub.server.stop()
            assert running.stderr is not None
            # its own thread: the default executor may be busy with other tests' waits
            lost = await asyncio.wait_for(_in_a_thread(running.stderr.readline), HANG)
            assert "cannot reach the hub" in lost, lost  # the follower saw it go
            assert "trying again for up to" in lost, lost
            port = int(hub.api.url.rsplit(":", 1)[1])
            restarted = HubServer(hub.home, __version__)
            await restarted.start(f"127.0.0.1:{port}", polling_port=polling_port)
            (tmp_path / "release").touch()
            out, err = await asyncio.wait_for(_in_a_thread(running.communicate), HANG)
    finally:
        if restarted is not None:
            await restarted.stop()
    assert running.returncode == 0, (out, err)
    assert "Reached the hub again" in err, err
    lines = out.splitlines()
    for text in ("before", "started on web-1", "released on web-1", "after"):
        assert lines.count(f"[web-1] {text}") == 1, out
    assert "Traceback" not in err


# --- bad input and a hub that is not there ----------------------------------------------------


async def test_a_task_that_does_not_exist_is_one_clear_line(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    for verb, extra in (("task", ()), ("task", ("--follow",)), ("cancel", ())):
        result = await tentacle_hub(tentacle, hub, verb, "ServerTasks-999", *extra)
        assert result.code == 1, result
        line = one_error_line(result)
        assert line == "error: the hub has no task ServerTasks-999 (tentacle hub tasks lists them)"
    malformed = await tentacle_hub(tentacle, hub, "task", "Tasks-1")
    assert malformed.code == 2, malformed
    assert "expected a task id such as ServerTasks-12, not 'Tasks-1'" in malformed.err


async def test_a_hub_that_is_down_is_one_clear_line(tentacle: TentacleCli, tmp_path: Path) -> None:
    nowhere = f"https://127.0.0.1:{free_port()}"
    path = script(tmp_path, "echo hi\n")
    variables = tmp_path / "variables.json"
    variables.write_text("[]")
    package = tmp_path / "Acme.Web.1.0.0.zip"
    package.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    for args in (
        ("run", "--pool", POOL, str(path)),
        ("deploy", "--pool", POOL, "--package", str(package), "--variables", str(variables)),
        ("tasks",),
        ("task", "ServerTasks-1"),
        ("cancel", "ServerTasks-1"),
    ):
        result = await asyncio.to_thread(
            tentacle.run, "hub", *args, "--server", nowhere, "--apikey", "API-" + "A" * 26
        )
        assert result.code == 1, (args, result)
        assert one_error_line(result).startswith(f"error: cannot reach the hub at {nowhere}"), args


async def test_bad_input_is_refused_before_anything_is_submitted(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    path = script(tmp_path, "echo hi\n")
    unknown_pool = await tentacle_hub(tentacle, hub, "run", "--pool", "Nope", str(path))
    assert one_error_line(unknown_pool) == (
        "error: the hub has no worker pool 'Nope' (it has 'Default Worker Pool')"
    )
    unknown_worker = await tentacle_hub(
        tentacle, hub, "run", "--pool", POOL, "--worker", "ghost", str(path)
    )
    assert one_error_line(unknown_worker) == "error: the hub has no worker 'ghost' (it has none)"
    binary = tmp_path / "binary.sh"
    binary.write_bytes(b"\xff\xfe\x00")
    not_text = await tentacle_hub(tentacle, hub, "run", "--pool", POOL, str(binary))
    assert one_error_line(not_text) == f"error: {binary}: the script must be UTF-8 text"
    for bad, named in (
        (("--max-parallelism", "0"), "--max-parallelism"),
        (("--max-parallelism", str(MAX_PARALLELISM + 1)), "--max-parallelism"),
        (("--timeout", "-1"), "--timeout"),
        (("--syntax", "cobol"), "--syntax"),
    ):
        refused = await tentacle_hub(tentacle, hub, "run", "--pool", POOL, *bad, str(path))
        assert refused.code == 2, refused
        assert named in refused.err, refused.err
    missing = await tentacle_hub(tentacle, hub, "run", "--pool", POOL, str(tmp_path / "nope.sh"))
    assert missing.code == 2, missing
    assert "does not exist" in missing.err, missing
    assert await hub.api.get("/api/tasks/all") == []  # nothing was submitted


async def test_deploy_refuses_a_bad_variables_file_or_package_name(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    variables = tmp_path / "variables.json"
    variables.write_text('[{"name": "A", "sensitive": "yes"}]')
    package = tmp_path / "Acme.Web.1.0.0.zip"
    package.write_bytes(b"PK\x05\x06" + bytes(18))
    bad_variables = await tentacle_hub(tentacle, hub, "deploy", "--pool", POOL, "--package",
                                       str(package), "--variables", str(variables))  # fmt: skip
    assert one_error_line(bad_variables) == (
        f"error: --variables: variables file {variables}: A: sensitive must be true or false"
    )
    variables.write_text("[]")
    unversioned = tmp_path / "Acme.zip"
    unversioned.write_bytes(package.read_bytes())
    bad_name = await tentacle_hub(tentacle, hub, "deploy", "--pool", POOL, "--package",
                                  str(unversioned), "--variables", str(variables))  # fmt: skip
    assert one_error_line(bad_name) == (
        "error: --package Acme.zip: expected a name like Id.1.2.3.zip or Id@1.2.3@hash.zip"
    )


# --- hub deploy -------------------------------------------------------------------------------


def package(tmp_path: Path, name: str, deploy_sh: str) -> Path:
    """A package named ``name`` holding config/app.conf and Deploy.sh."""
    import zipfile

    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config/app.conf", "listen = #{Web.Port}\n")
        archive.writestr("Deploy.sh", deploy_sh)
    return path


async def test_deploy_uploads_the_package_once_and_shows_the_output_variables(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    deploy_sh = ('cat config/app.conf\necho "the password is #{Db.Password}"\n'
                 'set_octopusvariable Port "#{Web.Port}"\n')  # fmt: skip
    first = package(tmp_path, "Acme.Web.1.0.0.zip", deploy_sh)
    variables = tmp_path / "variables.json"
    variables.write_text(
        '[{"name": "Web.Port", "value": "8080"},'
        ' {"name": "Octopus.Action.SubstituteInFiles.TargetFiles", "value": "config/*.conf"},'
        ' {"name": "Octopus.Action.EnabledFeatures",'
        '  "value": "Octopus.Features.SubstituteInFiles"},'
        ' {"name": "Db.Password", "value": "correct horse", "sensitive": true}]'
    )
    args = ["--pool", POOL, "--all-workers", "--package", str(first), "--variables", str(variables)]
    result = await tentacle_hub(tentacle, hub, "deploy", *args)
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == f"Uploaded Acme.Web.1.0.0.zip to the hub ({first.stat().st_size} bytes)"
    for worker in ("web-1", "web-2"):
        assert f"[{worker}] listen = 8080" in lines, result.out
        assert f"  [{worker}] Port = 8080" in lines, result.out
        assert f"[{worker}] finished: Success" in lines, result.out
    assert "correct horse" not in result.out + result.err  # masked before it was stored
    task_id = lines[1].split(":")[0]
    task = await task_of(hub, task_id)
    assert (task["Name"], task["State"]) == ("Deploy", "Success")

    # the same package again: not uploaded again
    again = await tentacle_hub(tentacle, hub, "deploy", *args)
    assert again.code == 0, again
    assert again.out.splitlines()[0] == (
        "Acme.Web 1.0.0 is in the hub's repository already (same content)"
    )
    # the same id and version with another content: refused, unless --replace
    changed = package(tmp_path / "changed", "Acme.Web.1.0.0.zip", deploy_sh + "echo v2\n")
    other = [*args[:3], "--package", str(changed), "--variables", str(variables)]
    refused = await tentacle_hub(tentacle, hub, "deploy", *other)
    assert refused.code == 1, refused
    line = one_error_line(refused)
    assert line.startswith("error: the hub holds Acme.Web 1.0.0 with another content"), line
    assert "--replace" in line
    replaced = await tentacle_hub(tentacle, hub, "deploy", *other, "--replace")
    assert replaced.code == 0, replaced
    assert replaced.out.startswith("Uploaded Acme.Web.1.0.0.zip"), replaced.out
    assert "[web-1] v2" in replaced.out.splitlines(), replaced.out
    # --no-wait: stdout is the task's id alone, what a script captures
    quiet = await tentacle_hub(tentacle, hub, "deploy", *other, "--no-wait")
    assert quiet.code == 0, quiet
    [task_id] = quiet.out.split()
    assert "is in the hub's repository already" in quiet.err
    followed = await tentacle_hub(tentacle, hub, "task", task_id, "--follow")
    assert followed.code == 0, followed


async def test_a_failing_deployment_exits_1_naming_the_worker(
    hub: RunningHub, tentacle: TentacleCli, workers: list[AgentProcess], tmp_path: Path
) -> None:
    failing = package(tmp_path, "Acme.Broken.2.0.0.zip", 'echo "no disk"\nexit 4\n')
    variables = tmp_path / "variables.json"
    variables.write_text("{}")
    args = ["--pool", POOL, "--worker", "web-2", "--package", str(failing)]
    result = await tentacle_hub(tentacle, hub, "deploy", *args, "--variables", str(variables))
    assert result.code == 1, result
    assert "[web-2] no disk" in result.out.splitlines(), result.out
    line = one_error_line(result)
    assert " Failed: " in line, line
    assert "web-2" in line, line
