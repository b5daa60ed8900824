from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import InstanceConfig, apply_environment
from agent.errors import ConfigError

FILE = InstanceConfig(home=Path("/home/a"), port=10933)


def test_environment_overrides_the_file() -> None:
    config = apply_environment(
        FILE,
        {
            "TENTACLE_SERVICE_PORT": "12000",
            "TENTACLE_NO_LISTEN": "True",
            "TENTACLE_HOME": "/data/tentacle",
            "TENTACLE_LISTEN_IP": "127.0.0.1",
            "TENTACLE_POLLING_CONNECTION_COUNT": "5",
            "TENTACLE_APPLICATION_DIRECTORY": "/apps",
            "UNRELATED": "x",
        },
    )
    assert config == InstanceConfig(
        home=Path("/data/tentacle"),
        application_directory=Path("/apps"),
        port=12000,
        listen_ip="127.0.0.1",
        no_listen=True,
        polling_connection_count=5,
    )


def test_unset_and_empty_variables_leave_the_file_alone() -> None:
    assert apply_environment(FILE, {"TENTACLE_SERVICE_PORT": ""}) == FILE
    assert apply_environment(FILE, {}) == FILE


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TENTACLE_SERVICE_PORT", "http"), ("TENTACLE_NO_LISTEN", "perhaps"), ("TENTACLE_HOME", "x")],
)
def test_an_invalid_variable_is_named(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"environment variable {variable}: .*expected"):
        apply_environment(FILE, {variable: value})
