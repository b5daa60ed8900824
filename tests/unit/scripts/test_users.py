"""The isolation groups' uids (agent.scripts.users): recorded, stable, never given twice."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from agent.config.model import InstanceConfig
from agent.errors import CallError, ConfigError
from agent.scripts import users
from agent.scripts.users import GroupUsers, check_group, missing_capabilities

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="handing folders to other uids needs root")


def free_range(size: int) -> tuple[int, int]:
    """``size`` uids of the default range that no account has (most machines: the first)."""
    first = users.DEFAULT_UID_RANGE[0]
    while any(_has_account(uid) for uid in range(first, first + size)):
        first += size
    return first, first + size - 1


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@needs_root
def test_each_group_gets_its_own_uid_recorded_and_kept_by_a_new_reader(tmp_path: Path) -> None:
    first, last = free_range(3)
    record = GroupUsers(tmp_path, (first, last))
    one, two = record.account("Projects-1"), record.account("Projects-2")
    assert (one.uid, two.uid) == (first, first + 1)
    assert record.account("Projects-1") == one
    again = GroupUsers(tmp_path, (first, last))  # the agent restarted
    assert again.account("Projects-2").uid == two.uid
    document = json.loads((tmp_path / users.USERS_FILE).read_text())
    assert document["Groups"] == {"Projects-1": first, "Projects-2": first + 1}
    assert oct((tmp_path / users.USERS_FILE).stat().st_mode & 0o777) == "0o600"
    info = one.folder.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (one.uid, one.uid, 0o700)
    assert one.temp.stat().st_uid == one.applications.stat().st_uid == one.uid


@needs_root
def test_a_uid_is_never_given_to_another_group_and_a_used_up_range_says_how_to_widen(
    tmp_path: Path,
) -> None:
    first, last = free_range(2)
    record = GroupUsers(tmp_path, (first, last))
    record.account("a")
    record.account("b")
    with pytest.raises(CallError) as used_up:
        record.account("c")
    assert used_up.value.kind == "refused"
    assert f"{first}-{last}" in str(used_up.value)
    assert "--script-uid-range" in str(used_up.value)
    # a wider range later: old groups keep theirs, a new one gets a fresh uid
    wider = GroupUsers(tmp_path, (first, last + 1))
    assert wider.account("c").uid == last + 1
    assert wider.uids == {"a": first, "b": first + 1, "c": last + 1}


@needs_root
def test_a_uid_an_account_has_is_skipped(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    assert GroupUsers(tmp_path, (nobody, nobody + 1)).account("g").uid != nobody


@needs_root
def test_a_link_planted_in_a_group_folder_is_replaced_not_followed(tmp_path: Path) -> None:
    first, last = free_range(1)
    record = GroupUsers(tmp_path, (first, last))
    account = record.account("g")
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    account.temp.rmdir()
    account.temp.symlink_to(outside)  # what the group's script could do
    again = record.account("g")
    assert not again.temp.is_symlink()
    assert again.temp.stat().st_uid == first
    assert outside.stat().st_uid == 0  # the link's target was not handed over


@pytest.mark.parametrize(
    "content", [b"not json", b'{"Groups": []}', b'{"Groups": {"a": "61184"}}', b"[1]"]
)
def test_a_damaged_record_is_a_clear_config_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / users.USERS_FILE).write_bytes(content)
    with pytest.raises(ConfigError) as damaged:
        GroupUsers(tmp_path)
    assert str(tmp_path / users.USERS_FILE) in str(damaged.value)


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x" * 201, "tab\there"])
def test_a_malformed_group_name_is_bad_params(bad: str) -> None:
    with pytest.raises(CallError) as refused:
        check_group(bad)
    assert refused.value.kind == "bad_params"
    assert "IsolationGroup" in str(refused.value)


def test_group_names_as_projects_and_spaces_name_them_are_taken() -> None:
    assert check_group("Projects-1") == "Projects-1"
    assert check_group("Spaces-1 ü") == "Spaces-1 ü"


def test_missing_capabilities_are_read_from_the_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t00000000000000c0\n")  # setuid and setgid only
    assert missing_capabilities(status) == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                                            "CAP_KILL"]  # fmt: skip
    status.write_text("CapEff:\t000001ffffffffff\n")
    assert missing_capabilities(status) == []
    status.write_text("CapEff:\t0000000000000000\n")
    assert len(missing_capabilities(status)) == len(users.REQUIRED_CAPABILITIES)


def test_the_uid_range_setting_takes_a_to_b_and_refuses_the_rest() -> None:
    config = InstanceConfig(home=Path("/x"))
    assert config.script_uid_range == (61184, 65519)
    assert config.with_settings(script_uid_range="70000-70010").script_uid_range == (70000, 70010)
    for bad in ("", "5", "10-5", "0-5", "a-b", "1-99999999999", "-5"):
        with pytest.raises(ValueError, match="script_uid_range: expected a range of uids A-B"):
            config.with_settings(script_uid_range=bad)


def test_the_environment_of_a_groups_script_is_an_allow_list() -> None:
    passed = users.passed_environment(
        {"PATH": "/bin", "LC_ALL": "C", "AWS_SECRET_ACCESS_KEY": "k", "HOME": "/root", "TZ": "UTC"}
    )
    assert passed == {"PATH": "/bin", "LC_ALL": "C", "TZ": "UTC"}
    assert users.passed_environment({})["PATH"] == users.DEFAULT_PATH


def test_a_groups_uid_alone_is_recorded_without_laying_out_its_folder(tmp_path: Path) -> None:
    """What a workspace's hand-over needs: the uid, allocated and recorded, no folder."""
    first, last = free_range(2)
    record = GroupUsers(tmp_path, (first, last))
    uid = record.uid("g")
    assert GroupUsers(tmp_path, (first, last)).uids == {"g": uid}
    assert not (tmp_path / users.GROUPS_FOLDER).exists()
    assert record.uid("g") == uid
