"""What a script may plant in its workspace (it owns it) in place of the agent's files:
a FIFO must not block the agent, a link must not be followed; both count as absent."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from agent.atomicfile import append_record
from agent.scripts import runner
from agent.scripts.outputlog import OutputLog

T = TypeVar("T")
HANG = 30.0  # a bound on a call that returns at once when it works


def without_blocking(fifo: Path, call: Callable[[], T]) -> T:
    """``call()``'s outcome; fails if it blocks on ``fifo`` (released then, so the test ends)."""
    outcome: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))  # the other end: the open returns
        thread.join(HANG)
        pytest.fail(f"blocked on the FIFO {fifo.name}")
    if errors:
        raise errors[0]
    return outcome[0]


def test_a_fifo_for_an_output_file_is_noted_and_ignored(tmp_path: Path) -> None:
    log = OutputLog(tmp_path)
    log.raw_path("stderr").write_bytes(b"kept\n")
    os.mkfifo(log.raw_path("stdout"))
    assert without_blocking(log.raw_path("stdout"), log.ingest)
    log.ingest()  # said once, not at every look
    served = [(entry["Source"], entry["Text"]) for entry in log.read(0)[0]]
    assert [source for source, _ in served] == ["stderr", "debug"], served
    assert served[0][1] == "kept"
    assert "stdout.raw was replaced" in served[1][1], served


def test_a_link_for_an_output_file_is_not_followed(tmp_path: Path) -> None:
    workspace, secret = tmp_path / "ws", tmp_path / "agent-secret"
    workspace.mkdir()
    secret.write_bytes(b"not the script's\n")
    log = OutputLog(workspace)
    log.raw_path("stdout").symlink_to(secret)
    assert log.ingest()
    assert not log.unread()
    assert [entry["Source"] for entry in log.read(0)[0]] == ["debug"]


def test_a_fifo_for_the_index_or_the_debug_log_refuses_without_blocking(tmp_path: Path) -> None:
    log = OutputLog(tmp_path)
    log.raw_path("stdout").write_bytes(b"line\n")
    for name in ("log.index", "debug.raw"):
        os.mkfifo(tmp_path / name)
    assert not without_blocking(tmp_path / "log.index", log.ingest)  # numbered later, maybe
    without_blocking(tmp_path / "debug.raw", lambda: log.note("a note"))  # to the agent's log
    reader = os.open(tmp_path / "log.index", os.O_RDONLY | os.O_NONBLOCK)  # as a script may
    try:
        with pytest.raises(OSError, match="not a regular file"):
            append_record(tmp_path / "log.index", b"x\n")  # the pipe would take it, unseen
    finally:
        os.close(reader)


def test_a_fifo_for_the_wrappers_records_is_no_record(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / runner.PID_FILE)
    assert without_blocking(tmp_path / runner.PID_FILE, lambda: runner.exit_code(tmp_path)) is None
    fifo = tmp_path / runner.PID_FILE
    assert without_blocking(fifo, lambda: runner.recorded_wrapper(tmp_path)) is None
