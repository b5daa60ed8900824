"""Re-adopting workspaces after a restart (agent.scripts.recovery) and the cleaner's choice.

Real files in a real work folder; the processes are this test's own (alive) and a
finished child of it (gone), so no script is started.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.protocol.services import State
from agent.scripts import cleaner, runner, tombstones
from agent.scripts.recovery import Fate, adopt_all
from agent.scripts.state import ScriptSpec, ScriptState, save_state


def workspace(work: Path, key: str, state: ScriptState) -> Path:
    folder = work / key
    folder.mkdir(parents=True)
    save_state(folder, state)
    return folder


def record_wrapper(folder: Path, pid: int) -> None:
    start = runner.process_start_time(pid)
    (folder / runner.PID_FILE).write_text(f"{pid} {start}\n")


def test_each_workspace_gets_its_fate(tmp_path: Path) -> None:
    work = tmp_path
    pending = ScriptState(ScriptSpec("Never"))
    workspace(work, "done", pending.moved_to(State.COMPLETE, exit_code=3))
    workspace(work, "never", pending)
    alive = workspace(work, "alive", pending)
    record_wrapper(alive, os.getpid())
    gone = workspace(work, "gone", pending)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    record_wrapper(gone, child.pid)
    recorded = workspace(work, "recorded", pending)
    record_wrapper(recorded, child.pid)
    child.wait()
    with (recorded / runner.PID_FILE).open("a") as record:
        record.write("7\n")  # the wrapper's second line: the script's exit status
    (work / "broken").mkdir()  # a start that never wrote its state
    (work / "released").mkdir()  # a complete cut short before removing the workspace

    stones = {"released": tombstones.Tombstone("released", 0, "2026-12-01T00:00:00+00:00", 0)}
    fates = {a.key: (a.fate, a.state.state) for a in adopt_all(work, stones)}

    assert fates == {
        "alive": (Fate.REATTACH, State.RUNNING),
        "done": (Fate.FINISHED, State.COMPLETE),
        "gone": (Fate.LOST, State.PENDING),
        "never": (Fate.RESTART, State.PENDING),
        "recorded": (Fate.RECORDED, State.PENDING),
    }
    assert [a.exit_code for a in adopt_all(work, stones) if a.key == "recorded"] == [7]
    assert not (work / "broken").exists()
    assert not (work / "released").exists()


def test_the_cleaner_picks_only_complete_scripts_past_the_retention(tmp_path: Path) -> None:
    old = "2026-01-01T00:00:00.000+00:00"
    pending = ScriptState(ScriptSpec("t"))
    states = {
        "old": pending.moved_to(State.COMPLETE, exit_code=0, completed=old),
        "recent": pending.moved_to(State.COMPLETE, exit_code=0, completed=cleaner_now()),
        "running": pending.moved_to(State.RUNNING, started=old),
    }
    before = cleaner.horizon(3600)
    assert list(cleaner.expired_scripts(states, before)) == ["old"]

    tombstones.save(tmp_path, "gone", tombstones.Tombstone("gone", 0, old, 0))
    tombstones.save(tmp_path, "kept", tombstones.Tombstone("kept", 0, cleaner_now(), 0))
    completed = tombstones.load_all(tmp_path)
    cleaner.remove_expired_tombstones(tmp_path, completed, before)
    assert sorted(completed) == ["kept"]
    assert sorted(tombstones.load_all(tmp_path)) == ["kept"]


def cleaner_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def test_a_state_the_script_replaced_is_not_believed(tmp_path: Path) -> None:
    # a script owns its workspace: a state.json of its own (or a link to another
    # file) naming another isolation group and Pending is not followed
    forged = ScriptState(ScriptSpec("Forged", isolation_group="victim"))
    elsewhere = workspace(tmp_path / "elsewhere", "real", forged)
    linked = workspace(tmp_path / "work", "linked", forged)
    (linked / "state.json").unlink()
    (linked / "state.json").symlink_to(elsewhere / "state.json")
    copied = workspace(tmp_path / "work", "copied", forged)
    os.link(copied / "state.json", copied / "second-link")  # not the agent's file alone

    adopted = {a.key: a for a in adopt_all(tmp_path / "work", {})}

    assert {key: a.fate for key, a in adopted.items()} == {
        "copied": Fate.TAMPERED,
        "linked": Fate.TAMPERED,
    }
    assert "2 links" in adopted["copied"].tampered
    assert "cannot be opened" in adopted["linked"].tampered
    # nothing of the file is believed: not even its group
    assert adopted["linked"].state.spec == ScriptSpec("linked")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another uid needs root")
def test_a_workspace_not_owned_by_its_states_group_is_not_followed(tmp_path: Path) -> None:
    pending = ScriptState(ScriptSpec("Mine", isolation_group="evil"))
    own = workspace(tmp_path, "own", pending)
    other = workspace(
        tmp_path, "other", pending.but(spec=ScriptSpec("Other", isolation_group="victim"))
    )
    done = workspace(tmp_path, "done", pending.moved_to(State.COMPLETE, exit_code=0))
    for folder in (own, other, done):
        os.chown(folder, 64001, 64001)  # the folder is evil's (uid 64001)
    uids = {"evil": 64001, "victim": 64002}

    adopted = {a.key: a for a in adopt_all(tmp_path, {}, lambda s: uids[s.isolation_group])}

    assert {key: (a.fate, a.state.state) for key, a in adopted.items()} == {
        "done": (Fate.FINISHED, State.COMPLETE),
        "other": (Fate.TAMPERED, State.PENDING),
        "own": (Fate.RESTART, State.PENDING),
    }
    assert "(uid 64001)" in adopted["other"].tampered
    assert "'victim'" in adopted["other"].tampered
