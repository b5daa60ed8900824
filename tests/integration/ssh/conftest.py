from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.sshd import SshServer


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """One OpenSSH server (and its user) for the whole session's SSH tests."""
    server = SshServer().start()
    yield server
    server.close()
