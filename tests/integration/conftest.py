from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli


@pytest.fixture
def agent(tentacle: TentacleCli) -> Iterator[AgentProcess]:
    """A listening agent on 127.0.0.1 that trusts the caller instance `hub`."""
    process = AgentProcess(tentacle).start()
    yield process
    process.stop()
