"""The verb table: every verb loads, and a run imports only what its verb needs."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from agent.cli.main import VERBS, cli

HEAVY = ("asyncssh", "sqlalchemy", "aiohttp", "agent.hub", "agent.calamari", "agent.client")


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_in_the_table_loads_a_command_of_that_name(verb: str) -> None:
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, verb)
    assert isinstance(command, click.Command), verb
    assert command.name == ("agent" if verb == "run" else verb)


def _imported_by(argv: list[str]) -> set[str]:
    """The top packages of HEAVY that a `tentacle ARGV` run imported, in a fresh interpreter."""
    probe = (
        "import sys\n"
        "from agent.cli.main import run\n"
        f"code = run({argv!r})\n"
        f"print('imported:', *(h for h in {HEAVY!r} if h in sys.modules))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    last = done.stdout.splitlines()[-1].split()
    assert last[0] == "imported:", done.stdout
    return set(last[1:])


def test_version_imports_none_of_the_heavy_stacks() -> None:
    assert _imported_by(["version"]) == set()


def test_a_verb_imports_its_own_stack_only() -> None:
    assert "asyncssh" not in _imported_by(["register-worker", "--help"])
    assert _imported_by(["create-instance", "--help"]) == set()


def test_the_hubs_settings_verbs_come_with_the_hub_group() -> None:
    with click.Context(cli) as ctx:
        hub = cli.get_command(ctx, "hub")
        assert isinstance(hub, click.Group)
        assert {"configure", "show-configuration", "serve"} <= set(hub.list_commands(ctx))
