"""agent.drain: the drain request file and its acknowledgement (real files)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from agent import drain
from agent.cli.drain_cmd import lock_holders
from agent.errors import ConfigError


class FakeScripts:
    """The Drainable side of a ScriptManager, to see what ``apply`` makes of a file."""

    def __init__(self) -> None:
        self.draining_since: str | None = None

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def set_draining(self, draining: bool, since: str | None = None) -> None:
        self.draining_since = (self.draining_since or since) if draining else None

    def running(self) -> int:
        return 2


def test_no_file_is_no_request(tmp_path: Path) -> None:
    assert drain.read_request(tmp_path) is None
    scripts = FakeScripts()
    assert drain.apply(tmp_path, scripts) is None
    assert not scripts.draining
    assert drain.read_ack(tmp_path) is None


def test_a_request_is_applied_and_acknowledged(tmp_path: Path) -> None:
    state = drain.write_request(tmp_path, True, lambda: "2026-12-01T00:00:00.000+00:00")
    scripts = FakeScripts()
    drain.apply(tmp_path, scripts)
    assert scripts.draining_since == "2026-12-01T00:00:00.000+00:00"
    ack = drain.read_ack(tmp_path)
    assert ack is not None
    assert ack.request == state.request
    assert ack.draining
    assert ack.running == 2
    assert ack.pid == os.getpid()
    assert (tmp_path / drain.REQUEST_FILE).stat().st_mode & 0o777 == 0o600


def test_draining_again_keeps_the_first_time_and_resume_clears_it(tmp_path: Path) -> None:
    first = drain.write_request(tmp_path, True, lambda: "first")
    again = drain.write_request(tmp_path, True, lambda: "second")
    assert again.since == first.since == "first"
    assert again.request != first.request
    resumed = drain.write_request(tmp_path, False, lambda: "third")
    assert not resumed.draining
    assert resumed.since is None
    assert drain.write_request(tmp_path, True, lambda: "fourth").since == "fourth"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"Draining": "yes", "Request": "x"}',
        '{"Draining": true}',
        '{"Draining": true, "Request": "x", "Since": 5}',
    ],
)
def test_a_malformed_request_is_a_config_error_naming_the_file(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / drain.REQUEST_FILE).write_text(content)
    with pytest.raises(ConfigError) as caught:
        drain.read_request(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / drain.REQUEST_FILE) in message
    assert '"Draining": true|false' in message
    # the running agent logs it and keeps its state; a new request replaces the file
    scripts = FakeScripts()
    scripts.set_draining(True, "before")
    assert drain.apply(tmp_path, scripts) is None
    assert scripts.draining_since == "before"
    assert drain.write_request(tmp_path, True, lambda: "now").since == "now"
    (tmp_path / drain.REQUEST_FILE).write_text(content)
    with pytest.raises(ConfigError):
        drain.apply_at_start(tmp_path, FakeScripts())


def test_a_torn_or_foreign_acknowledgement_is_none(tmp_path: Path) -> None:
    (tmp_path / drain.ACK_FILE).write_text('{"Request": "x"}')
    assert drain.read_ack(tmp_path) is None
    (tmp_path / drain.ACK_FILE).write_text(json.dumps({"Request": "x", "Draining": True,
        "Since": None, "Running": "many", "Pid": 1}))  # fmt: skip
    assert drain.read_ack(tmp_path) is None


def test_the_lock_holder_is_found_in_proc_locks(tmp_path: Path) -> None:
    path = tmp_path / "tentacle.lock"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert lock_holders(path) == set()
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        assert lock_holders(path) == {os.getpid()}
    finally:
        os.close(descriptor)
    assert lock_holders(path) == set()
