"""configure's options are the settings table's flags: each one sets its setting."""

from __future__ import annotations

from agent.config.model import INSTANCE_SETTINGS
from tests.helpers.cli import TentacleCli

# Flag -> (what a person types, what show-configuration then shows).
TYPED = {
    "--app": ("apps", "{root}/apps"),
    "--port": ("12000", 12000),
    "--listenIpAddress": ("::1", "::1"),
    "--noListen": ("true", True),
    "--pollingConnectionCount": ("7", 7),
    "--heartbeat-interval": ("2.5", 2.5),
    "--max-running-scripts": ("4", 4),
    "--workspace-retention": ("60", 60.0),
    "--workspace-sweep-interval": ("5", 5.0),
    "--script-cgroups": ("false", False),
    "--script-memory-max": ("512M", 512 * 1024 * 1024),
    "--script-pids-max": ("64", 64),
    "--script-cpu-weight": ("50", 50),
    "--script-users": ("off", False),  # the default is on
    "--script-uid-range": ("70000-70009", "70000-70009"),
}
FLAGGED = [row for row in INSTANCE_SETTINGS if row.flag]


def test_every_flag_of_the_table_has_an_example_here() -> None:
    assert sorted(TYPED) == sorted(row.flag.name for row in FLAGGED if row.flag)


def test_every_flag_sets_its_setting_and_is_listed_in_the_help(tentacle: TentacleCli) -> None:
    del tentacle.env["TENTACLE_SCRIPT_USERS"]  # the tests' own (tests/helpers/cli.py) hides it
    tentacle.ok("create-instance", "--instance", "a")
    args = [part for flag, (typed, _) in TYPED.items() for part in (flag, typed)]
    tentacle.ok("configure", "--instance", "a", *args)
    shown = tentacle.ok("show-configuration", "--instance", "a", "--format", "json").json()
    for row in FLAGGED:
        assert row.flag is not None
        assert row.shown_as is not None
        expected = TYPED[row.flag.name][1]
        if isinstance(expected, str):
            expected = expected.format(root=tentacle.root)
        assert shown[row.shown_as] == expected, row.name
    listed = tentacle.ok("configure", "--help").out
    for row in FLAGGED:
        assert row.flag is not None
        assert row.flag.name in listed
        assert row.help.split()[0] in listed


def test_a_value_the_flag_parses_but_the_setting_refuses_names_the_setting(
    tentacle: TentacleCli,
) -> None:
    tentacle.ok("create-instance", "--instance", "a")
    failure = tentacle.fails("configure", "--instance", "a", "--heartbeat-interval", "0", code=2)
    assert "heartbeat_interval: expected seconds from 0.05 to 3600, got 0.0" in failure.err
