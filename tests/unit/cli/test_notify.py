"""sd_notify and the journal stream, on real sockets and files (agent/cli/notify.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from agent.cli.notify import (
    Notifier,
    on_journal,
    socket_address,
    watchdog_interval,
    without_service_variables,
)
from agent.errors import ConfigError
from tests.helpers.notify import NotifySocket


def test_a_path_and_an_abstract_name_are_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@name/x") == b"\0name/x"


@pytest.mark.parametrize("value", ["relative/path", "@", "vsock:2:1234"])
def test_a_notify_socket_systemd_would_never_set_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="NOTIFY_SOCKET=.*absolute path or an abstract"):
        socket_address(value)


def test_the_watchdog_is_fed_twice_per_interval_and_only_for_its_own_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({}, 42) is None


@pytest.mark.parametrize("value", ["-5", "0", "1.5", "soon"])
def test_a_bad_watchdog_interval_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match=r"WATCHDOG_USEC=.*positive whole number"):
        watchdog_interval({"WATCHDOG_USEC": value}, 42)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_messages_reach_the_socket_one_datagram_each(tmp_path: Path, abstract: bool) -> None:
    manager = NotifySocket(None if abstract else tmp_path / "notify")
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": manager.variable})
        notifier.ready("listening on wss://127.0.0.1:1/")
        notifier.status("line one\nline two")
        notifier.stopping("stopping")
        notifier.close()
        assert manager.wait_for("READY") == {
            "READY": "1", "STATUS": "listening on wss://127.0.0.1:1/"
        }  # fmt: skip
        assert manager.wait_for("STATUS", "line one line two")  # one line: no forged keys
        assert manager.wait_for("STOPPING") == {"STOPPING": "1", "STATUS": "stopping"}
    finally:
        manager.close()


async def test_the_watchdog_is_fed_until_cancelled(tmp_path: Path) -> None:
    manager = NotifySocket(tmp_path / "notify")
    notifier = Notifier(str(tmp_path / "notify"), interval=0.01)
    feeding = asyncio.create_task(notifier.keep_alive())
    try:
        await asyncio.to_thread(manager.wait_for_count, "WATCHDOG", "1", 3)
    finally:
        feeding.cancel()
        notifier.close()
        manager.close()
    assert all(message == {"WATCHDOG": "1"} for message in manager.messages)


async def test_no_watchdog_asked_for_means_no_feeding() -> None:
    await asyncio.wait_for(Notifier("/nonexistent", interval=None).keep_alive(), 5)
    await asyncio.wait_for(Notifier(None, interval=1).keep_alive(), 5)


def test_without_notify_socket_nothing_is_sent_or_opened() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert not notifier.active
    assert notifier.interval is None
    notifier.ready("x")  # nothing to send it to: no error


def test_a_vanished_manager_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING):
        notifier.ready("x")
        notifier.stopping("y")
    warnings = [r.getMessage() for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert str(tmp_path / "gone") in warnings[0]


def test_scripts_never_see_the_variables_meant_for_the_service() -> None:
    environ = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2",
               "JOURNAL_STREAM": "1:2", "PATH": "/bin"}  # fmt: skip
    assert without_service_variables(environ) == {"PATH": "/bin"}


def test_the_journal_is_the_stream_whose_device_and_inode_match(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream, open(tmp_path / "other", "w") as other:
        info = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert on_journal(environ, stream.fileno())
        assert not on_journal(environ, other.fileno())  # stderr redirected elsewhere
        assert not on_journal({}, stream.fileno())
        assert not on_journal({"JOURNAL_STREAM": "garbage"}, stream.fileno())
        assert not on_journal({"JOURNAL_STREAM": f"{info.st_dev}:"}, stream.fileno())
