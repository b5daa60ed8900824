"""packaging/container/Containerfile: no container engine runs here, so its promises
are read from the file: a non-root user, the volume where the entrypoint keeps the
instance, SIGTERM, and commands that the `tentacle` command really has."""

from __future__ import annotations

import json

import click

from agent.cli.container_cmd import DEFAULT_INSTANCE
from agent.cli.main import cli
from tests.helpers.containerfile import image_environment, instructions


def verbs() -> list[str]:
    """Every verb of `tentacle`, the lazily imported ones too (cli.commands has only
    those imported so far)."""
    return cli.list_commands(click.Context(cli))


def one(name: str) -> str:
    [value] = [arguments for instruction, arguments in instructions() if instruction == name]
    return value


def test_the_entrypoint_is_a_tentacle_verb() -> None:
    entrypoint = json.loads(one("ENTRYPOINT"))
    assert entrypoint == ["tentacle", "container-start"]
    assert "container-start" in verbs()


def test_a_non_root_user_a_volume_for_the_instance_and_sigterm() -> None:
    assert one("USER") not in ("root", "0")
    assert one("STOPSIGNAL") == "SIGTERM"
    volume = one("VOLUME")
    assert image_environment()["TENTACLE_CONFIG_HOME"] == volume


def test_its_unprivileged_agent_accepts_one_user_for_all_scripts() -> None:
    """A user without CAP_SETUID cannot switch: with script users on, every hub task
    (each names an isolation group) would be refused."""
    assert image_environment()["TENTACLE_SCRIPT_USERS"] == "off"


def test_the_health_check_is_tentacle_livez() -> None:
    command = one("HEALTHCHECK").split("CMD", 1)[1].strip()
    assert json.loads(command)[:4] == ["tentacle", "livez", "--instance", DEFAULT_INSTANCE]
    assert "livez" in verbs()
