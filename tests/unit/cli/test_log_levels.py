"""The daemon's and hub's logs: their own lines, not a library's chatter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from agent.cli.logs import configure_logging


@pytest.fixture
def restored() -> Iterator[None]:
    root, ssh = logging.getLogger(), logging.getLogger("asyncssh")
    handlers, level, ssh_level = root.handlers[:], root.level, ssh.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    ssh.setLevel(ssh_level)


@pytest.mark.usefixtures("restored")
def test_asyncssh_s_channel_lines_stay_out_of_the_log_its_warnings_do_not() -> None:
    """asyncssh logs each SSH channel and its command line (a step's arguments) at
    INFO: 53 lines for one health check and one step before."""
    configure_logging("text")
    ssh = logging.getLogger("asyncssh")
    assert not ssh.isEnabledFor(logging.INFO)
    assert ssh.isEnabledFor(logging.WARNING)
    assert logging.getLogger("agent.hub").isEnabledFor(logging.INFO)
