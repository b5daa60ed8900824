"""The test helpers' own contracts: a wait that cannot be met fails, and says why; a
hub's database copied from a migrated one is that hub's own."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.hub.home import DATABASE_FILE
from agent.hub.store import open_store
from agent.hub.store import tables as t
from agent.hub.store.engine import head_revision
from agent.hub.store.records import fact, fetch_all
from tests.helpers.agent import AgentProcess
from tests.helpers.hub import copy_migrated_sqlite, running_hub
from tests.helpers.sshd import SshServer


def test_waiting_for_a_log_line_that_never_comes_fails_with_the_log_so_far(
    listening_agent: AgentProcess,
) -> None:
    with pytest.raises(AssertionError) as caught:
        listening_agent.wait_for_log("a line no agent writes", timeout=0.1)
    message = str(caught.value)
    assert message.startswith("not within 0.1 s: a line containing 'a line no agent writes'")
    assert "the output so far:" in message
    with pytest.raises(AssertionError, match=re.escape("not within 0.1 s: a line containing")):
        listening_agent.wait_for_output("Agent stopped", timeout=0.1)


async def test_a_copied_migrated_sqlite_is_at_the_newest_schema_and_each_hub_initialises_its_own(
    tmp_path: Path,
) -> None:
    """The template saves each hub's migration from empty, nothing else: no hub's rows
    reach another (each gets its own InstallationId), the template stays uninitialised,
    and the home's database file keeps the mode create_home gave it."""
    installations = []
    for name in ("one", "two"):
        async with running_hub(tmp_path / name) as hub:
            database = hub.home.path / DATABASE_FILE
            assert stat.S_IMODE(database.stat().st_mode) == 0o600
            store = await open_store(hub.home.settings.database)
            try:
                assert await store.revision() == head_revision()
                async with store.connect() as conn:
                    installations.append(await fact(conn, "InstallationId"))
            finally:
                await store.close()
    assert None not in installations
    assert installations[0] != installations[1]
    template = await open_store(copy_migrated_sqlite(tmp_path / "copy.db"))
    try:
        assert await template.revision() == head_revision()
        async with template.connect() as conn:
            assert await fetch_all(conn, sa.select(t.spaces)) == []
            assert await fact(conn, "InstallationId") is None
    finally:
        await template.close()


def test_two_ssh_servers_of_one_process_have_users_of_their_own() -> None:
    """The SSH tests' server and the hub's both ran in one xdist worker as
    tentacle-ssh-<pid>: the second's start deleted the first's user, whose teardown
    then failed (KeyError from getpwnam) and whose sessions lost their account."""
    first, second = SshServer(), SshServer()
    try:
        assert first.user != second.user
    finally:
        first.close()
        second.close()
