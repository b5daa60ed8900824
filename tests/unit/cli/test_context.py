from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.context import config_home


@pytest.mark.parametrize(
    ("environ", "is_root", "expected"),
    [
        ({"TENTACLE_CONFIG_HOME": "/custom", "XDG_CONFIG_HOME": "/xdg"}, True, "/custom"),
        ({"TENTACLE_CONFIG_HOME": "/custom"}, False, "/custom"),
        ({"XDG_CONFIG_HOME": "/xdg"}, True, "/etc/tentacle"),
        ({"XDG_CONFIG_HOME": "/xdg"}, False, "/xdg/tentacle"),
        ({"TENTACLE_CONFIG_HOME": ""}, True, "/etc/tentacle"),
    ],
)
def test_config_home(environ: dict[str, str], is_root: bool, expected: str) -> None:
    assert config_home(environ, is_root) == Path(expected)


def test_user_default_is_under_home_config() -> None:
    assert config_home({}, is_root=False) == Path.home() / ".config" / "tentacle"
