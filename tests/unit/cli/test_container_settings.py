"""Tentacle's container variables into settings: every default, every refusal."""

from __future__ import annotations

import pytest

from agent.cli.container_settings import ContainerSettings, VariableError, settings_from

BASE = {
    "ServerUrl": "https://hub.example:8065/",
    "ServerApiKey": "API-ABC123",
    "TargetWorkerPool": "Default Worker Pool",
}


def settings(**variables: str) -> ContainerSettings:
    return settings_from({**BASE, **variables}, lambda: "box", lambda: "box.example.org")


def refused(**variables: str) -> str:
    with pytest.raises(VariableError) as caught:
        settings(**variables)
    return str(caught.value)


def test_the_defaults_make_a_listening_worker_named_and_dialled_as_the_computer() -> None:
    got = settings()
    assert got.style == "TentaclePassive"
    assert (got.name, got.public_host, got.listening_port) == ("box", "box", None)
    assert (got.pools, got.policy, got.space, got.server_thumbprint) == (
        ("Default Worker Pool",), None, "Default", None,
    )  # fmt: skip


def test_server_port_or_comms_address_makes_a_polling_worker() -> None:
    by_port = settings(ServerPort="10943")
    assert (by_port.polling, by_port.hub_comms_host, by_port.polling_port) == (
        True, "hub.example", 10943,
    )  # fmt: skip
    by_address = settings(ServerCommsAddress="https://comms.example:443")
    assert (by_address.polling, by_address.hub_comms_host, by_address.polling_port) == (
        True, "comms.example", 443,
    )  # fmt: skip
    assert by_address.public_host == ""  # nobody dials a polling worker
    assert settings(ServerCommsAddress="comms.example").polling_port is None  # the hub's


def test_lists_names_and_choices() -> None:
    got = settings(
        TargetWorkerPool=" A , WorkerPools-2 ",
        TargetName="web 1",
        MachinePolicy="Quick",
        Space="Spaces-2",
        ServerThumbprint="ab" * 20,
        ListeningPort="10999",
    )
    assert got.pools == ("A", "WorkerPools-2")
    assert (got.name, got.policy, got.space, got.listening_port) == (
        "web 1", "Quick", "Spaces-2", 10999,
    )  # fmt: skip
    assert got.server_thumbprint == "AB" * 20
    assert settings(PublicHostNameConfiguration="fqdn").public_host == "box.example.org"
    assert settings(CustomPublicHostName="10.0.0.5").public_host == "10.0.0.5"
    custom = settings(PublicHostNameConfiguration="Custom", CustomPublicHostName="::1")
    assert custom.public_host == "[::1]"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"ServerUrl": ""}, "ServerUrl: not set; expected the hub's URL"),
        ({"ServerUrl": "ftp://hub/"}, "ServerUrl: 'ftp://hub/' is not an http(s) URL"),
        ({"ServerUrl": "https://hub:port/"}, "ServerUrl: 'https://hub:port/' has a malformed port"),
        ({"ServerApiKey": ""}, "ServerApiKey: not set"),
        ({"ServerApiKey": "API-A B"}, "ServerApiKey: expected API- followed by letters"),
        ({"ServerThumbprint": "1234"}, "ServerThumbprint: '1234' is not a thumbprint"),
        ({"TargetWorkerPool": ""}, "TargetWorkerPool: not set"),
        ({"TargetWorkerPool": "A,,B"}, "TargetWorkerPool: 'A,,B' has an empty name"),
        ({"TargetName": "a\tb"}, "TargetName: must not contain"),
        ({"ServerPort": "0"}, "ServerPort: '0' is not a port; expected 1 to 65535"),
        ({"ServerPort": "x"}, "ServerPort: 'x' is not a port"),
        ({"ListeningPort": "70000"}, "ListeningPort: '70000' is not a port"),
        ({"ServerPort": "10943", "ListeningPort": "10933"}, "ListeningPort: set, but"),
        ({"ServerCommsAddress": "https://h:1/x"}, "ServerCommsAddress: 'https://h:1/x' is not"),
        ({"ServerCommsAddress": "https://h:99999"}, "ServerCommsAddress: 'https://h:99999' has"),
        (
            {"ServerCommsAddress": "https://h:1", "ServerPort": "2"},
            "ServerPort: 2 contradicts ServerCommsAddress's port 1",
        ),
        ({"PublicHostNameConfiguration": "Moon"}, "PublicHostNameConfiguration: 'Moon'; expected"),
        ({"PublicHostNameConfiguration": "PublicIp"}, "PublicHostNameConfiguration: PublicIp asks"),
        ({"PublicHostNameConfiguration": "Custom"}, "CustomPublicHostName: not set"),
        (
            {"PublicHostNameConfiguration": "FQDN", "CustomPublicHostName": "h"},
            "CustomPublicHostName: set, but PublicHostNameConfiguration is FQDN",
        ),
        ({"CustomPublicHostName": "h:10933"}, "CustomPublicHostName: 'h:10933' is not a host"),
        ({"TargetEnvironment": "Prod"}, "TargetEnvironment: deployment targets are not supported"),
        ({"ServerUsername": "me"}, "ServerUsername: log-in by user name is not supported"),
        ({"BearerToken": "t"}, "BearerToken: bearer tokens are not supported"),
    ],
)
def test_a_bad_variable_is_named_with_what_was_expected(
    variables: dict[str, str], expected: str
) -> None:
    assert refused(**variables).startswith(expected)


def test_the_key_is_never_in_a_message() -> None:
    assert "secret" not in refused(ServerApiKey="API-secret value")


def test_the_host_is_asked_for_only_when_a_default_needs_it() -> None:
    def unused() -> str:
        raise AssertionError("asked for a host name no default needed")

    variables = {**BASE, "TargetName": "n", "ServerPort": "10943"}
    assert settings_from(variables, unused, unused).name == "n"
