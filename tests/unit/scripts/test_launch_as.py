"""runner.launch as another account, both ways it can change users: through
util-linux's setpriv (the default: a vfork of it, not a fork of the agent) and
through subprocess (where there is no setpriv). Real processes, real ids."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.protocol.services import ExitCode
from agent.scripts import runner
from agent.scripts.manager import ScriptManager, ScriptSettings
from agent.scripts.state import ScriptSpec
from agent.scripts.users import GroupUsers
from tests.helpers import users

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

IDS = "grep -E '^(Uid|Gid|Groups|CapPrm|CapEff|CapAmb):' /proc/self/status | tr -s '\\t ' ' '\n"


@pytest.fixture
def uid() -> Iterator[int]:
    """A uid of no user (the agent's range), its processes killed after."""
    chosen = random.randrange(61184, 65519)
    yield chosen
    users.kill_uids((chosen, chosen))


@pytest.fixture
def workspace(uid: int) -> Iterator[Path]:
    """A script's workspace owned by ``uid``, in a folder other users may search."""
    folder = Path(tempfile.mkdtemp(prefix="launch-as-", dir="/tmp"))
    folder.chmod(0o711)
    work = folder / "work"
    work.mkdir(mode=0o700)
    (work / "script.sh").write_text(IDS + 'echo "args: $*"\n')
    runner.hand_over(work, runner.Account(uid, uid))
    try:
        yield work
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def agent_in_groups(*groups: int) -> Iterator[None]:
    """This process (the agent) in supplementary ``groups`` for a while."""
    before = os.getgroups()
    os.setgroups(list(groups))
    try:
        yield
    finally:
        os.setgroups(before)


def run_as(workspace: Path, account: runner.Account) -> tuple[int, list[str]]:
    """Launch the workspace's script as ``account`` and wait: its exit code and lines."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    launched = runner.launch(workspace, "bash", ["one", "two words"], environment, account)
    _, status = os.waitpid(launched.pid, 0)
    runner._SPAWNED.pop(launched.pid, None)
    return os.waitstatus_to_exitcode(status), (workspace / "stdout.raw").read_text().splitlines()


@needs_root
@pytest.mark.parametrize("way", ["setpriv", "subprocess"])
def test_a_script_launched_as_an_account_has_its_ids_alone_and_no_capability(
    way: str, uid: int, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if way == "subprocess":
        monkeypatch.setattr(runner, "_setpriv", lambda: None)
    elif runner._setpriv() is None:
        pytest.fail("util-linux's setpriv is missing: the agent would fork itself per script")
    code, lines = run_as(workspace, runner.Account(uid, uid, (uid + 1,)))
    assert code == 0, lines
    assert lines == [
        f"Uid: {uid} {uid} {uid} {uid}",
        f"Gid: {uid} {uid} {uid} {uid}",
        f"Groups: {uid + 1} ",
        "CapPrm: 0000000000000000",
        "CapEff: 0000000000000000",
        "CapAmb: 0000000000000000",
        "args: one two words",
    ]
    assert (workspace / runner.PID_FILE).read_text().split("\n")[1] == "0"


@needs_root
def test_without_supplementary_groups_setpriv_clears_the_agents(
    uid: int, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "_nsenter", lambda: None)  # else nsenter takes such an account
    assert runner._switcher(runner.Account(uid, uid)) == runner._setpriv()
    with agent_in_groups(4, 24):  # as an agent in adm and cdrom would be
        code, lines = run_as(workspace, runner.Account(uid, uid))
    assert code == 0, lines
    assert "Groups: " in lines  # none: the agent's groups were not inherited


@needs_root
def test_an_account_without_groups_changes_through_nsenter_and_drops_the_agents(
    uid: int, workspace: Path
) -> None:
    """nsenter takes the ids as numbers (setpriv looks each up as a name first)."""
    if runner._nsenter() is None:
        pytest.fail("util-linux's nsenter is missing: setpriv's name lookups would be paid")
    assert runner._switcher(runner.Account(uid, uid)) == runner._nsenter()
    with agent_in_groups(4, 24):  # as an agent in adm and cdrom would be
        code, lines = run_as(workspace, runner.Account(uid, uid))
    assert code == 0, lines
    assert lines == [
        f"Uid: {uid} {uid} {uid} {uid}",
        f"Gid: {uid} {uid} {uid} {uid}",
        "Groups: ",
        "CapPrm: 0000000000000000",
        "CapEff: 0000000000000000",
        "CapAmb: 0000000000000000",
        "args: one two words",
    ]


@needs_root
def test_groups_left_by_a_refused_setgroups_run_nothing(
    uid: int, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nsenter goes on when setgroups fails (outside a user namespace): the wrapper
    checks the groups itself and runs nothing with any but the account's gid."""
    if runner._nsenter() is None:
        pytest.fail("util-linux's nsenter is missing")

    def keeping_groups(account: runner.Account, bash: str, arguments: list[str]) -> list[str]:
        # without --setgid nsenter makes no setgroups: the agent's groups stay, as a
        # refused one would leave them
        return ["nsenter", f"--setuid={account.uid}", "--", bash, *arguments]

    monkeypatch.setattr(runner, "_nsenter_command", keeping_groups)
    with agent_in_groups(4, 24):  # as an agent in adm and cdrom would be
        code, lines = run_as(workspace, runner.Account(uid, uid))
    assert code == runner.NOT_ISOLATED
    assert lines == []
    assert not (workspace / runner.PID_FILE).exists()


@needs_root
async def test_the_manager_reports_groups_left_by_a_refused_setgroups_as_a_launch_failure(
    uid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wrapper's refusal (NOT_ISOLATED) reaches the caller as LAUNCH_FAILED with a
    note saying why, not as a full disk's."""
    if runner._nsenter() is None:
        pytest.fail("util-linux's nsenter is missing")

    def keeping_groups(account: runner.Account, bash: str, arguments: list[str]) -> list[str]:
        return ["nsenter", f"--setuid={account.uid}", "--", bash, *arguments]

    monkeypatch.setattr(runner, "_nsenter_command", keeping_groups)
    home = Path(tempfile.mkdtemp(prefix="launch-as-", dir="/tmp"))
    home.chmod(0o711)
    settings = ScriptSettings(home / "Work", {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                              users=GroupUsers(home, (uid, uid)))  # fmt: skip
    manager = ScriptManager(settings)
    try:
        with agent_in_groups(4, 24):
            await manager.open()
            status = await manager.start(ScriptSpec("refused-groups"), "touch ran", None, 30.0)
    finally:
        await manager.close()
    try:
        assert status.exit_code == ExitCode.LAUNCH_FAILED
        notes = " ".join(entry["Text"] for entry in status.logs)
        assert "kept supplementary groups" in notes, notes
        assert not (home / "Work" / "refused-groups" / "ran").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)
