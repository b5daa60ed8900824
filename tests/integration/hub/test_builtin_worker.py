"""The hub's built-in worker (agent.hub.builtin): the ``Worker`` interface over the
hub's own script runner, in ``<hub home>/BuiltinWorker/``.

Real processes and files throughout: scripts run as the agent's do (a wrapper in a
session of its own), the process holding the worker is killed with -9 mid-script
and a new one follows the same ticket, and steps run as a throwaway unprivileged
user made with useradd (as root, as CI runs; skipped with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from agent import __version__
from agent.client import LogChunk, RemoteError, ScriptOutcome, ScriptRequest, Worker
from agent.errors import CallError, ConfigError
from agent.hub.adhoc import BUILTIN_NAME
from agent.hub.builtin import FOLDER, BuiltinWorker, _copy_in, _copy_out
from agent.hub.home import HomeInUse, create_home, load_home
from agent.hub.server import HubServer
from agent.scripts.runner import process_start_time
from tests.helpers import users
from tests.helpers.cli import HUB_TEST_ENV, TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.hub import HubApi, RunningHub, pinned, running_hub
from tests.integration.hub.tasks_helpers import finished, submit
from tests.integration.hub.test_hub_command import READY
from tests.integration.hub.test_node_lease import _serving
from tests.integration.hub.test_task_restarts import (
    EXPECTED,
    LINES,
    _lines_of,
    _stored,
    staged_script,
    starts,
)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="useradd and switching users need root")


@asynccontextmanager
async def builtin(hub_home: Path, user: str | None = None) -> AsyncIterator[BuiltinWorker]:
    worker = BuiltinWorker(hub_home, user, version="test", environment=dict(os.environ))
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


class Collected:
    """Every chunk ``execute`` hands over, checked to come in order without gaps."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, str]] = []

    def __call__(self, chunk: LogChunk) -> None:
        expected = self.lines[-1][0] + 1 if self.lines else 1
        assert chunk.first == expected, (chunk.first, expected, self.lines[-3:])
        for offset, line in enumerate(chunk.lines):
            self.lines.append((chunk.first + offset, chunk.source, line))

    def of(self, source: str) -> list[str]:
        return [text for _, origin, text in self.lines if origin == source]


async def run(
    worker: Worker, body: str, cancel: asyncio.Event | None = None, **fields: object
) -> tuple[ScriptOutcome, Collected]:
    collected = Collected()
    request = ScriptRequest(body=body, **fields)  # type: ignore[arg-type]
    outcome = await worker.execute(request, collected, cancel)
    return outcome, collected


async def test_a_last_line_without_a_newline_does_not_keep_the_hubs_loop_from_turning(
    tmp_path: Path,
) -> None:
    """While a step's last line has no newline yet, its status says more output is to
    come: the worker's poll loop once took that as lines flowing and asked again at
    once, never yielding, so the loop never saw the script end (nor ran anything
    else of the hub's). Here the script ends only when a task on the same loop lets it."""
    marks = tmp_path / "marks"
    marks.mkdir()
    body = f"printf partial; touch {marks}/printed; until [ -e {marks}/go ]; do sleep 0.01; done"

    async def let_it_end() -> None:
        await eventually(lambda: (marks / "printed").exists() or None, "the partial line")
        (marks / "go").touch()

    async with builtin(tmp_path / "hub") as worker:
        releaser = asyncio.ensure_future(let_it_end())
        outcome, out = await run(worker, body)
        await releaser
    assert (outcome.exit_code, out.of("stdout")) == (0, ["partial"])


async def test_a_script_runs_with_its_output_its_files_and_its_exit_code(tmp_path: Path) -> None:
    local = tmp_path / "data.txt"
    local.write_text("from the hub\n")
    async with builtin(tmp_path / "hub") as worker:
        assert isinstance(worker, Worker)
        facts = await worker.capabilities()
        assert "bash" in facts["Shells"]
        assert facts["AgentVersion"] == "test"
        body = 'echo "one $1"; echo two >&2; cat sub/data.txt; pwd; exit 3'
        outcome, out = await run(worker, body, arguments=["a b"], files=[("sub/data.txt", local)])
        assert (outcome.exit_code, outcome.cancelled, outcome.already_finished) == (3, False, False)
        workspace = tmp_path / "hub" / FOLDER / "Work" / outcome.ticket.lower()
        assert out.of("stdout") == ["one a b", "from the hub", str(workspace)]
        assert out.of("stderr") == ["two"]
        assert not workspace.exists()  # released once followed to the end, as an agent does
        # the same ticket again runs nothing: its outcome, remembered
        again, lines = await run(worker, body, ticket=outcome.ticket)
        assert (again.exit_code, again.already_finished, lines.lines) == (3, True, [])
        python, out = await run(worker, "import sys\nprint('py', sys.argv[1:])", syntax="python",
                                arguments=["x"])  # fmt: skip
        assert (python.exit_code, out.of("stdout")) == (0, ["py ['x']"])
        # many lines come whole, in order, each once
        _many, out = await run(worker, "seq 1 20000")
        assert out.of("stdout") == [str(n) for n in range(1, 20001)]


class Slow(Collected):
    """A follower that stores slower than lines come: ``drained`` is awaited after each
    delivery, so no more lines are read until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.go_on = asyncio.Event()
        self.waiting = asyncio.Event()

    async def drained(self) -> None:
        self.waiting.set()
        await self.go_on.wait()


async def test_a_follower_that_stores_slowly_holds_the_reading_back(tmp_path: Path) -> None:
    async with builtin(tmp_path / "hub") as worker:
        slow = Slow()
        following = asyncio.create_task(worker.execute(ScriptRequest(body="seq 1 200000"), slow))
        await asyncio.wait_for(slow.waiting.wait(), 60)
        held = len(slow.lines)
        for _ in range(10):  # while it does not drain, nothing more is read
            await asyncio.sleep(0)
        assert 0 < len(slow.lines) == held < 200000
        assert not following.done()
        slow.go_on.set()
        outcome = await asyncio.wait_for(following, 60)
    assert outcome.exit_code == 0
    assert [int(line) for line in slow.of("stdout")] == list(range(1, 200001))


async def test_bad_requests_are_refused_naming_what_is_wrong(tmp_path: Path) -> None:
    async with builtin(tmp_path / "hub") as worker:
        with pytest.raises(RemoteError) as refused:
            await run(worker, "echo", syntax="cobol")
        assert refused.value.kind == "bad_params"
        assert "cobol" in str(refused.value)
        local = tmp_path / "f"
        local.write_text("x")
        for name in ("../escape", "/etc/passwd", "script.sh"):
            with pytest.raises(RemoteError) as refused:
                await run(worker, "echo", files=[(name, local)])
            assert refused.value.kind == "bad_params"
            assert repr(name) in str(refused.value)
        with pytest.raises(RemoteError) as refused:
            await run(worker, "echo", ticket="../../x")
        assert refused.value.kind == "bad_params"
        # the worker still runs the next one
        outcome, out = await run(worker, "echo fine")
        assert (outcome.exit_code, out.of("stdout")) == (0, ["fine"])


async def test_a_cancelled_script_stops_and_reports_its_real_exit_code(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    body = f"trap 'echo stopping; exit 7' TERM\ntouch {marker}\nwhile true; do sleep 0.1; done"
    async with builtin(tmp_path / "hub") as worker:
        cancel = asyncio.Event()
        running = asyncio.create_task(run(worker, body, cancel))
        await eventually(marker.exists, "the script started")
        cancel.set()
        outcome, out = await asyncio.wait_for(running, 60)
        assert (outcome.exit_code, outcome.cancelled) == (7, True)
        assert "stopping" in out.of("stdout")
        # cancel(ticket) from elsewhere: whoever follows the script learns the outcome
        marker.unlink()
        request = ScriptRequest(body=body, grace=0.5)
        following = asyncio.create_task(worker.execute(request, Collected()))
        await eventually(marker.exists, "the second script started")
        await worker.cancel(request.ticket)
        outcome = await asyncio.wait_for(following, 60)
        assert (outcome.exit_code, outcome.cancelled) == (7, False)
        await worker.cancel("no-such-ticket")  # nothing to do: no error


async def test_files_move_in_and_out_of_its_folder_only(tmp_path: Path) -> None:
    hub = create_home(tmp_path / "hub")
    local = tmp_path / "package.zip"
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    async with builtin(hub.path) as worker:
        folder = hub.path / FOLDER
        sent = await worker.upload(local, "Files/packages/package.zip")
        assert sent == {"FullPath": str(folder / "Files/packages/package.zip"),
                        "Length": local.stat().st_size, "Sha256": digest}  # fmt: skip
        back = tmp_path / "back.zip"
        fetched = await worker.download("Files/packages/package.zip", back)
        assert fetched["Sha256"] == digest
        assert back.read_bytes() == local.read_bytes()
        assert [p.name for p in (folder / "Files/packages").iterdir()] == ["package.zip"]
        # the script finds what was sent, by the path upload answered
        _outcome, out = await run(worker, f"sha256sum {sent['FullPath']} | cut -d' ' -f1")
        assert out.of("stdout") == [digest]
        (folder / "Files" / "out").symlink_to(hub.identity_path)
        escaping = {
            "../identity.pem": "outside the allowed roots",
            str(hub.identity_path): "outside the allowed roots",
            "Files/../../hub.yaml": "outside the allowed roots",
            "Files/out": "outside the allowed roots",  # a link pointing out is refused too
            "serve.lock": "the built-in worker's lock",
        }
        for path, why in escaping.items():
            for attempt in (worker.upload(local, path), worker.download(path, back)):
                with pytest.raises(RemoteError) as refused:
                    await attempt
                assert (refused.value.kind, why in str(refused.value)) == ("refused", True), path
        with pytest.raises(RemoteError) as refused:
            await worker.upload(local, "Work/x")
        assert refused.value.kind == "refused"
        assert "only the script runner" in str(refused.value)
        with pytest.raises(RemoteError) as refused:
            await worker.download("Files/nothing-here", back)
        assert refused.value.kind == "not_found"
        with pytest.raises(RemoteError) as refused:
            await worker.upload(local, "Files/packages")  # a folder is not replaced
        assert refused.value.kind == "refused"
        assert "not a regular file" in str(refused.value)
        assert back.read_bytes() == local.read_bytes()  # a refused download changed nothing
        assert hub.identity_path.read_bytes().startswith(b"-----BEGIN")
        assert stat.S_IMODE((folder / "Files").stat().st_mode) == 0o700


def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(tmp_path: Path) -> None:
    """What a step's user could do between the path's check and the copy (it owns
    Files/): the copy then meets a link where the check saw a folder, and refuses it."""
    root, outside = tmp_path / FOLDER, tmp_path / "outside"
    (root / "Files").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("not for steps")
    (root / "Files" / "swapped").symlink_to(outside)
    local = tmp_path / "local"
    local.write_text("package")
    with pytest.raises(CallError) as refused:
        _copy_in(local, root / "Files" / "swapped" / "planted", root, None)
    assert refused.value.kind == "refused"
    assert f"{root}/Files/swapped is not a folder" in str(refused.value)
    with pytest.raises(CallError) as refused:
        _copy_out(root / "Files" / "swapped" / "secret", root, tmp_path / "taken")
    assert refused.value.kind == "refused"
    (root / "Files" / "link").symlink_to(outside / "secret")
    with pytest.raises(CallError) as refused:
        _copy_out(root / "Files" / "link", root, tmp_path / "taken")
    assert refused.value.kind == "refused"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert not (tmp_path / "taken").exists()


async def test_a_second_worker_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    async with builtin(tmp_path / "hub"):
        with pytest.raises(HomeInUse):
            await BuiltinWorker(tmp_path / "hub").start()


# A process holding a BuiltinWorker (steps as argv[5] if given): it follows one ticket
# and writes every line it is handed to a file (flushed each), until it is killed.
HOLDER = """
import asyncio, json, sys
from pathlib import Path
from agent.client import ScriptRequest
from agent.hub.builtin import BuiltinWorker

async def main(home, ticket, body, seen, user=None):
    worker = BuiltinWorker(Path(home), user or None, version="test")
    await worker.start()
    with open(seen, "a") as out:
        def take(chunk):
            for offset, line in enumerate(chunk.lines):
                out.write(json.dumps([chunk.first + offset, chunk.source, line]) + "\\n")
            out.flush()
        outcome = await worker.execute(ScriptRequest(body=body, ticket=ticket), take)
    print("exit", outcome.exit_code, flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def _killed_while_following(
    home: Path, ticket: str, body: str, seen: Path, until: bytes, user: str = ""
) -> list[tuple[int, str, str]]:
    """Run a holder following ``ticket`` until it was handed ``until``, then kill it
    with -9; returns the lines it had been handed."""
    holder = subprocess.Popen(  # a child to kill, not to wait for
        [sys.executable, "-c", HOLDER, str(home), ticket, body, str(seen), user],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def handed() -> bool:
            return seen.exists() and until in seen.read_bytes()

        await eventually(handed, f"the holder was handed {until!r}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(60)
    assert holder.returncode == -signal.SIGKILL, holder.stderr.read() if holder.stderr else ""
    return [tuple(json.loads(line)) for line in seen.read_text().splitlines()]


async def _reattach_after_kill(home: Path, marks: Path, user: str | None = None) -> None:
    """A script half done when its holder is killed -9 is followed by a new worker on
    the same folder: every line once, in order, numbered as before, its real exit
    code, started once."""
    go, starts = marks / "go", marks / "starts"
    body = (
        f"echo started-as-$(id -u) >> {starts}\n"
        "for n in $(seq 1 500); do echo before-$n; done\n"
        f"while [ ! -e {go} ]; do sleep 0.05; done\n"
        "for n in $(seq 1 500); do echo after-$n; done\n"
        "echo warned >&2\nexit 5\n"
    )
    ticket, seen = secrets.token_hex(16), marks / "seen.jsonl"
    first = await _killed_while_following(home, ticket, body, seen, b'"before-500"', user or "")
    async with builtin(home, user) as worker:
        collected = Collected()
        following = asyncio.create_task(
            worker.execute(ScriptRequest(body="never run", ticket=ticket), collected)
        )
        await eventually(lambda: len(collected.lines) >= 500, "the second follower caught up")
        go.touch()  # the script, still running, carries on
        outcome = await asyncio.wait_for(following, 60)
    assert (outcome.exit_code, outcome.already_finished) == (5, False)
    expected = [f"before-{n}" for n in range(1, 501)] + [f"after-{n}" for n in range(1, 501)]
    assert collected.of("stdout") == expected  # no line lost, none twice
    assert collected.of("stderr") == ["warned"]
    # the lines the killed holder was handed are the same lines, numbered the same
    assert [tuple(line) for line in collected.lines[: len(first)]] == first
    uid = pwd.getpwnam(user).pw_uid if user else os.geteuid()
    assert starts.read_text() == f"started-as-{uid}\n"  # once, not again by the second


async def test_a_worker_killed_mid_script_is_followed_again_by_ticket(tmp_path: Path) -> None:
    await _reattach_after_kill(tmp_path / "hub", tmp_path)


@pytest.fixture
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    """An unprivileged user with a home of its own, removed afterwards."""
    if not ROOT:
        pytest.skip("creating a user needs root")
    with users.throwaway_user("tt") as user:
        yield user


@pytest.fixture
def reachable_folder() -> Iterator[Path]:
    """A folder another user may search (pytest's own tmp folder is its owner's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="builtin-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


@needs_root
async def test_steps_run_as_another_user_who_cannot_read_the_hubs_files(
    throwaway_user: pwd.struct_passwd, reachable_folder: Path, tmp_path: Path
) -> None:
    hub = create_home(reachable_folder / "hub")
    user = throwaway_user
    local = tmp_path / "input.txt"
    local.write_text("sent by the hub\n")
    async with builtin(hub.path, user.pw_name) as worker:
        sent = await worker.upload(local, "Files/in/input.txt")
        body = (
            "id -u; id -g; echo $HOME; echo $USER\n"
            f"cat {sent['FullPath']}\n"
            "touch made-here && echo made\n"
            f"echo hi > {hub.path / FOLDER}/Files/written && echo wrote\n"
            f"cat {hub.identity_path} && echo READ-THE-IDENTITY\n"
            f"cat {hub.path / 'hub.db'} > /dev/null && echo READ-THE-DATABASE\n"
            f"cat {hub.settings_path} > /dev/null && echo READ-THE-SETTINGS\n"
            f"ls {hub.path} && echo LISTED-THE-HOME\n"
            "stat -c '%u %a' .\n"
        )
        _outcome, out = await run(worker, body)
    stdout = out.of("stdout")
    expected = [str(user.pw_uid), str(user.pw_gid), user.pw_dir, user.pw_name,
                "sent by the hub", "made", "wrote"]  # fmt: skip
    assert stdout[:7] == expected, (stdout, out.of("stderr"))
    assert stdout[7:] == [f"{user.pw_uid} 700"]  # its workspace: its own, no one else's
    assert not any("READ-THE" in line or "LISTED" in line for line in stdout)
    assert sum("Permission denied" in line for line in out.of("stderr")) == 4, out.of("stderr")
    assert (hub.path / FOLDER / "Files/written").stat().st_uid == user.pw_uid
    assert (hub.path / FOLDER / "Files/in/input.txt").stat().st_uid == user.pw_uid
    assert stat.S_IMODE(hub.path.stat().st_mode) == 0o711
    assert stat.S_IMODE(hub.identity_path.stat().st_mode) == 0o600


@needs_root
async def test_hub_serve_runs_its_builtin_worker_as_the_user_given(
    throwaway_user: pwd.struct_passwd, reachable_folder: Path, tentacle: TentacleCli
) -> None:
    home, user = reachable_folder / "hub", throwaway_user.pw_name
    tentacle.ok("hub", "create", "--home", str(home))
    logged = await _serve_briefly(tentacle, home, "--builtin-worker-user", user)
    assert f"built-in worker ready in {home / FOLDER} (steps run as {user})" in logged
    assert stat.S_IMODE(home.stat().st_mode) == 0o711
    files = (home / FOLDER / "Files").stat()
    assert (files.st_uid, stat.S_IMODE(files.st_mode)) == (throwaway_user.pw_uid, 0o700)
    # stored, and off again: the hub's home is its own again
    tentacle.ok("hub", "configure", "--home", str(home), "--builtin-worker-user", user)
    assert f"(steps run as {user})" in await _serve_briefly(tentacle, home)
    tentacle.ok("hub", "configure", "--home", str(home), "--builtin-worker-user", "")
    assert "(steps run as the hub's own user)" in await _serve_briefly(tentacle, home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


@needs_root
async def test_a_worker_running_steps_as_a_user_killed_mid_script_is_followed_again(
    throwaway_user: pwd.struct_passwd, reachable_folder: Path
) -> None:
    marks = reachable_folder / "marks"
    marks.mkdir(mode=0o777)
    marks.chmod(0o777)  # the script, as the user, leaves its marks here
    await _reattach_after_kill(reachable_folder / "hub", marks, throwaway_user.pw_name)


@needs_root
@pytest.mark.parametrize("restarted_as", ["the user", "the hub"])
async def test_a_forged_wrapper_pid_does_not_make_the_hub_follow_a_process_of_roots(
    throwaway_user: pwd.struct_passwd, reachable_folder: Path, restarted_as: str
) -> None:
    """A step's user can rewrite its workspace's wrapper.pid: after a restart (with the
    user still set, or not any more) the hub must not take a process that is not the
    user's for the step (and signal it)."""
    home, marks = reachable_folder / "hub", reachable_folder / "marks"
    marks.mkdir()
    marks.chmod(0o777)
    go, ticket, user = marks / "go", secrets.token_hex(16), throwaway_user.pw_name
    body = f"echo waiting\nwhile [ ! -e {go} ]; do sleep 0.05; done\n"
    await _killed_while_following(home, ticket, body, marks / "seen", b'"waiting"', user)
    roots = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        start = process_start_time(roots.pid)
        (home / FOLDER / "Work" / ticket / "wrapper.pid").write_text(f"{roots.pid} {start}\n")
        async with builtin(home, user if restarted_as == "the user" else None) as worker:
            # (bounded: a hub that took the sleep for the step would wait its 600 s)
            outcome, out = await asyncio.wait_for(run(worker, "never run", ticket=ticket), 60)
        assert outcome.exit_code == -46
        assert any("not followed" in line for line in out.of("debug")), out.lines
        assert roots.poll() is None  # never signalled
    finally:
        roots.kill()
        roots.wait(60)
        go.touch()


@needs_root
async def test_a_user_whose_folders_are_out_of_reach_is_refused_at_start(
    throwaway_user: pwd.struct_passwd, reachable_folder: Path, tentacle: TentacleCli
) -> None:
    hidden = reachable_folder / "private"
    hidden.mkdir(mode=0o700)
    user = throwaway_user.pw_name
    with pytest.raises(ConfigError) as refused:
        await BuiltinWorker(hidden / "hub", user).start()
    expected = f"BuiltinWorkerUser {user!r} cannot reach the built-in worker's folder"
    assert expected in str(refused.value)
    assert f"{hidden} (mode 0700) is not searchable by it" in str(refused.value)
    assert not (hidden / "hub").exists()
    # hub serve says so before its database is touched
    tentacle.ok("hub", "create", "--home", str(hidden / "hub"))
    database = (hidden / "hub" / "hub.db").read_bytes()
    served = tentacle.fails(*_serve(hidden / "hub", "--builtin-worker-user", user))
    assert expected in served.err
    assert (hidden / "hub" / "hub.db").read_bytes() == database
    assert not (hidden / "hub" / FOLDER).exists()


@pytest.mark.parametrize(
    ("user", "why"),
    [
        ("no-such-user-here", "there is no user 'no-such-user-here' on this machine"),
        ("root", "'root' is root; expected an unprivileged user"),
    ],
)
async def test_a_user_that_cannot_run_steps_is_refused_at_start(
    tmp_path: Path, user: str, why: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        await BuiltinWorker(tmp_path / "hub", user).start()
    assert why in str(refused.value)
    assert not (tmp_path / "hub").exists()  # refused before anything was made


def _serve(home: Path, *extra: str) -> tuple[str, ...]:
    return ("hub", "serve", "--home", str(home), "--listen", "127.0.0.1:0",
            "--polling-port", "0", *extra)  # fmt: skip


async def _serve_briefly(
    tentacle: TentacleCli, home: Path, *extra: str, env: dict[str, str] | None = None
) -> str:
    """`tentacle hub serve` until it listens, then SIGTERM; returns what it logged."""
    process = subprocess.Popen(  # its output is read in a thread
        [sys.executable, "-m", "agent", *_serve(home, *extra)], env={**tentacle.env, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert READY.search(line), (line, process.stderr.read() if process.stderr else "")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(process.communicate, None, 60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    return err


async def _root(server: HubServer) -> dict[str, object]:
    """The API's root document (open: no key)."""
    connector = aiohttp.TCPConnector(ssl=pinned(server.home))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await HubApi(server.url, session, None).get("/api")


async def test_the_builtin_worker_is_on_by_default_and_turned_off_by_flag_setting_or_variable(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    shown = tentacle.ok("hub", "show-configuration", "--home", str(home), "--format", "json")
    assert (shown.json()["BuiltinWorker"], shown.json()["BuiltinWorkerUser"]) == (True, None)
    # off for one run: nothing of it is made
    logged = await _serve_briefly(tentacle, home, "--no-builtin-worker")
    assert "the built-in worker is off" in logged
    assert not (home / FOLDER).exists()
    server = HubServer(load_home(home, HUB_TEST_ENV), __version__)
    await server.start("127.0.0.1:0", polling_port=0)
    try:
        assert isinstance(server.builtin, BuiltinWorker)
        assert (await _root(server))["BuiltinWorkerEnabled"] is True
        _outcome, out = await run(server.builtin, "echo from the hub machine")
        assert out.of("stdout") == ["from the hub machine"]
    finally:
        await server.stop()
    assert server.builtin is None
    # off for good
    changed = tentacle.ok("hub", "configure", "--home", str(home), "--builtin-worker", "false")
    assert "BuiltinWorker: True -> False" in changed.out
    assert "BuiltinWorker: false\n" in (home / "hub.yaml").read_text()
    server = HubServer(load_home(home, HUB_TEST_ENV), __version__)
    await server.start("127.0.0.1:0", polling_port=0)
    try:
        assert (await _root(server))["BuiltinWorkerEnabled"] is False
    finally:
        await server.stop()
    assert server.builtin is None
    assert load_home(home).settings.builtin_worker is False
    tentacle.ok("hub", "configure", "--home", str(home), "--builtin-worker", "true")
    environ = {"TENTACLE_HUB_BUILTIN_WORKER": "false"}
    people = tentacle.ok("hub", "show-configuration", "--home", str(home), env=environ).out
    assert "False (from TENTACLE_HUB_BUILTIN_WORKER)" in people
    assert "the built-in worker is off" in await _serve_briefly(tentacle, home, env=environ)


def test_builtin_worker_settings_are_checked_when_configured(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    before = (home / "hub.yaml").read_text()
    bad = tentacle.fails("hub", "configure", "--home", str(home), "--builtin-worker", "maybe",
                         code=2)  # fmt: skip
    assert "'maybe' is not a valid boolean" in bad.err
    for name in ("bad name", "-rf", "x" * 33, "ünï"):
        bad = tentacle.fails("hub", "configure", "--home", str(home), "--builtin-worker-user",
                             name, code=2)  # fmt: skip
        assert "BuiltinWorkerUser: expected a user name of 1 to 32 characters" in bad.err, name
    assert (home / "hub.yaml").read_text() == before
    set_user = ("hub", "configure", "--home", str(home), "--builtin-worker-user")
    assert "BuiltinWorkerUser: (none) -> steps" in tentacle.ok(*set_user, "steps").out
    assert "BuiltinWorkerUser: steps -> (none)" in tentacle.ok(*set_user, "").out


async def test_serve_refuses_a_builtin_worker_user_that_cannot_be(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    missing = tentacle.fails(*_serve(home, "--builtin-worker-user", "no-such-user-here"))
    assert "BuiltinWorkerUser: there is no user 'no-such-user-here' on this machine" in missing.err
    tentacle.ok("hub", "configure", "--home", str(home), "--builtin-worker-user", "root")
    stored = tentacle.fails(*_serve(home))
    assert "BuiltinWorkerUser: 'root' is root; expected an unprivileged user" in stored.err
    assert not (home / FOLDER).exists()
    # with the worker off, its user does not matter
    assert "the built-in worker is off" in await _serve_briefly(
        tentacle, home, "--no-builtin-worker"
    )


# A process that is not root asks for a user to run steps as
NOT_ROOT = """
import asyncio, os, sys
from pathlib import Path
from agent.errors import ConfigError
from agent.hub.builtin import BuiltinWorker
uid = int(sys.argv[2])
os.setgroups([]); os.setgid(uid); os.setuid(uid)
try:
    asyncio.run(BuiltinWorker(Path(sys.argv[1]), sys.argv[3]).start())
except ConfigError as error:
    print(error)
"""


@needs_root
def test_a_hub_that_is_not_root_cannot_run_steps_as_another_user(
    throwaway_user: pwd.struct_passwd, tmp_path: Path
) -> None:
    uid = throwaway_user.pw_uid
    child = subprocess.run(
        [sys.executable, "-c", NOT_ROOT, str(tmp_path / "hub"), str(uid), "nobody"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert child.stdout.strip() == (
        f"BuiltinWorkerUser 'nobody': running steps as another user needs the hub to run as"
        f" root, and it runs as uid {uid}; start it as root, or serve without"
        " --builtin-worker-user (`tentacle hub configure --builtin-worker-user ''`)"
    ), child


async def test_the_root_document_says_whether_the_builtin_worker_is_on(
    hub: RunningHub, tmp_path: Path
) -> None:
    status, root = await hub.api.request("GET", "/api", key="")
    assert (status, root["BuiltinWorkerEnabled"]) == (200, True)
    assert isinstance(hub.server.builtin, BuiltinWorker)
    async with running_hub(tmp_path / "second", builtin_worker=False) as other:
        status, root = await other.api.request("GET", "/api", key="")
        assert (status, root["BuiltinWorkerEnabled"]) == (200, False)
        assert other.server.builtin is None
        assert not (other.home.path / FOLDER).exists()


# -- tasks on the built-in worker (AdHocScript on a pool without workers) -----------


async def _empty_pool(api: HubApi) -> str:
    name = f"Empty {secrets.token_hex(3)}"
    status, pool = await api.request("POST", "/api/workerpools", json={"Name": name})
    assert status == 201, pool
    return str(pool["Id"])


async def test_a_task_on_a_pool_without_workers_runs_on_the_builtin_worker(
    hub: RunningHub,
) -> None:
    pool = await _empty_pool(hub.api)
    body = 'for n in $(seq 1 500); do echo "line-$n"; done; echo "to $1" >&2; exit 0'
    task = await submit(hub.api, ScriptBody=body, ScriptArguments=["stderr"], WorkerPoolId=pool)
    done = await finished(hub.api, task)
    assert (done["State"], done["ErrorMessage"]) == ("Success", "")
    lines = await _lines_of(hub.api, task)
    assert list(lines) == [BUILTIN_NAME]
    assert lines[BUILTIN_NAME] == [f"line-{n}" for n in range(1, 501)] + ["to stderr"]
    failing = await submit(hub.api, ScriptBody="echo no; exit 3", WorkerPoolId=pool)
    done = await finished(hub.api, failing)
    assert done["State"] == "Failed"
    assert "exited with code 3" in done["ErrorMessage"], done["ErrorMessage"]


async def _killed_and_restarted(home: Path, shared: Path, env: dict[str, str], *extra: str) -> None:
    """A task on the built-in worker of a real `hub serve` killed -9 mid-step; the script
    goes on printing while no hub runs; the restarted hub follows it to its end."""
    async with _serving(home, env, *extra) as (process, api):
        task = await submit(
            api, ScriptBody=staged_script(shared), ScriptArguments=["s"],
            WorkerPoolId=await _empty_pool(api),
        )  # fmt: skip
        await eventually(lambda: starts(shared) == ["s"], "the step started")
        await _stored(api, task, BUILTIN_NAME, LINES)
        process.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(process.wait, 60) == -signal.SIGKILL
    (shared / "go-1").touch()  # the script prints while no hub follows it
    await eventually(lambda: list(shared.glob("middle-done-*")), "the middle printed")
    async with _serving(home, env, *extra) as (process, api):
        (shared / "go-2").touch()
        done = await finished(api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")
        assert starts(shared) == ["s"]  # started once, not again by the restarted hub
        assert await _lines_of(api, task) == {BUILTIN_NAME: EXPECTED}  # each line once


async def test_a_hub_killed_mid_step_on_its_builtin_worker_follows_it_after_a_restart(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    tentacle.ok("hub", "create", "--home", str(tmp_path / "hub"))
    (tmp_path / "shared").mkdir()
    await _killed_and_restarted(tmp_path / "hub", tmp_path / "shared", tentacle.env)


@needs_root
async def test_tasks_on_the_builtin_worker_run_as_its_user_and_survive_a_kill(
    throwaway_user: pwd.struct_passwd, reachable_folder: Path, tentacle: TentacleCli
) -> None:
    home, shared, user = reachable_folder / "hub", reachable_folder / "shared", throwaway_user
    tentacle.ok("hub", "create", "--home", str(home))
    shared.mkdir()
    shared.chmod(0o777)  # the script, as the user, counts its starts here
    as_user = ("--builtin-worker-user", user.pw_name)
    async with _serving(home, tentacle.env, *as_user) as (_, api):
        body = f"id -u; cat {home / 'identity.pem'} || echo refused"
        task = await submit(api, ScriptBody=body, WorkerPoolId=await _empty_pool(api))
        done = await finished(api, task)
        lines = (await _lines_of(api, task))[BUILTIN_NAME]
    assert done["State"] == "Success", done
    assert lines[0] == str(user.pw_uid)
    assert "refused" in lines
    assert any(line.endswith("identity.pem: Permission denied") for line in lines), lines
    assert not any("PRIVATE KEY" in line for line in lines)
    await _killed_and_restarted(home, shared, tentacle.env, *as_user)


async def test_a_script_gets_its_environment_in_memory_only(tmp_path: Path) -> None:
    """``ScriptRequest.environment`` reaches the script's process as on an agent, and no
    file of the hub's home holds it, while the script runs (blocked on a FIFO the test
    holds) or after; a bad one is refused naming the variable."""
    secret = f"pw-{secrets.token_hex(16)}"
    fifo = tmp_path / "go.fifo"
    os.mkfifo(fifo)
    body = (
        "printf '%s' \"$ONE_TIME\" | sha256sum | cut -c1-64; echo ready\n"
        'IFS= read -r line < "$1"; echo "got $line"'
    )
    ready = asyncio.Event()
    collected = Collected()

    def output(chunk: LogChunk) -> None:
        collected(chunk)
        if "ready" in chunk.lines:
            ready.set()

    async with builtin(tmp_path / "hub") as worker:
        request = ScriptRequest(body, arguments=[str(fifo)], environment={"ONE_TIME": secret})
        running = asyncio.ensure_future(worker.execute(request, output))
        waited = asyncio.ensure_future(ready.wait())
        await asyncio.wait({running, waited}, return_when=asyncio.FIRST_COMPLETED)
        assert ready.is_set(), f"the script ended before it was ready: {running.result()}"
        assert (tmp_path / "hub" / FOLDER / "Work" / request.ticket).is_dir()
        assert _files_holding(tmp_path / "hub", secret.encode()) == []
        await asyncio.to_thread(fifo.write_text, "go\n")
        outcome = await running
        assert outcome.exit_code == 0
        assert collected.of("stdout") == [hashlib.sha256(secret.encode()).hexdigest(), "ready",
                                          "got go"]  # fmt: skip
        assert _files_holding(tmp_path / "hub", secret.encode()) == []
        with pytest.raises(RemoteError, match="'2X' is not a variable name") as caught:
            await run(worker, "true", environment={"2X": secret})
        assert secret not in str(caught.value)


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if stat.S_ISREG(path.lstat().st_mode) and needle in path.read_bytes():
                found.append(path)
    return found


async def test_steps_get_an_allow_listed_environment_only(tmp_path: Path) -> None:
    """The hub's secrets in its environment (its API key, a database password) never
    reach a step; PATH, the locale, TZ, TMPDIR and the account's HOME/USER do."""
    hub_env = {
        **os.environ,
        "TENTACLE_API_KEY": "API-NOTFORSTEPS",
        "PGPASSWORD": "pg-not-for-steps",
        "AWS_SECRET_ACCESS_KEY": "aws-not-for-steps",
        "TENTACLE_HUB_DATABASE": "postgresql://u:pw@db/x",
        "LANG": "C.UTF-8",
        "LC_TIME": "C",
        "TZ": "UTC",
        "TMPDIR": str(tmp_path),
        "HOME": str(tmp_path),
    }
    worker = BuiltinWorker(tmp_path / "hub", None, version="test", environment=hub_env)
    await worker.start()
    try:
        outcome, collected = await run(worker, "env")
    finally:
        await worker.stop()
    assert outcome.exit_code == 0, collected.lines
    seen = dict(line.split("=", 1) for line in collected.of("stdout") if "=" in line)
    for secret in ("TENTACLE_API_KEY", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert secret not in seen, secret
    assert not [key for key in seen if key.startswith("TENTACLE_HUB_")]
    wanted = {"LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "TMPDIR": str(tmp_path)}
    assert {key: seen.get(key) for key in wanted} == wanted
    assert seen["HOME"] == str(tmp_path)
    assert seen["PATH"] == os.environ.get("PATH", seen["PATH"])
    assert seen["TentacleVersion"] == "test"
