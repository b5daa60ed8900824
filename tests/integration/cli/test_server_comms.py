"""server-comms: recording the servers a polling agent dials."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.helpers.cli import TentacleCli

SERVER = "AB" * 20


def shown(tentacle: TentacleCli) -> dict[str, Any]:
    value: dict[str, Any] = tentacle.ok("show-configuration", "--format", "json").json()
    return value


def test_a_polling_server_is_recorded_with_a_stable_subscription_id(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "a")
    tentacle.ok("server-comms", "--style", "TentacleActive", "--host", "Hub.Example",
                "--thumbprint", SERVER.lower())  # fmt: skip
    [server] = shown(tentacle)["PollingServers"]
    assert server["Address"] == "https://hub.example:10943/"
    assert server["Thumbprint"] == SERVER
    subscription = server["SubscriptionId"]
    assert re.fullmatch(r"poll://[a-z2-9]{20}/", subscription)
    assert not set(subscription[7:-1]) & set("01io")  # Tentacle's unambiguous alphabet
    # re-registering (a new thumbprint, a second server) keeps the id
    tentacle.ok("server-comms", "--host", "hub.example", "--thumbprint", "CD" * 20)
    tentacle.ok("server-comms", "--host", "::1", "--port", "20943", "--thumbprint", SERVER)
    servers = shown(tentacle)["PollingServers"]
    assert [(s["Address"], s["Thumbprint"]) for s in servers] == [
        ("https://hub.example:10943/", "CD" * 20),
        ("https://[::1]:20943/", SERVER),
    ]
    assert {s["SubscriptionId"] for s in servers} == {subscription}
    stored = yaml.safe_load((tentacle.config_home / "a" / "tentacle.yaml").read_text())
    assert stored["subscription_id"] == subscription
    assert "polls https://[::1]:20943/" in tentacle.ok("show-configuration").out


def test_passive_style_trusts_the_thumbprint(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "a")
    tentacle.ok("server-comms", "--style", "TentaclePassive", "--thumbprint", SERVER)
    config = shown(tentacle)
    assert config["PollingServers"] == []
    assert config["Trust"] == [{"Thumbprint": SERVER, "Sha256": None, "Pending": True}]


def test_bad_input_is_refused_and_changes_nothing(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "a")
    config = tentacle.config_home / "a" / "tentacle.yaml"
    before = config.read_bytes()
    assert "--host is required" in tentacle.fails("server-comms", "--thumbprint", SERVER,
                                                  code=2).err  # fmt: skip
    assert (
        "expected a host name"
        in tentacle.fails("server-comms", "--host", "bad host!", "--thumbprint", SERVER, code=2).err
    )
    assert (
        "malformed thumbprint"
        in tentacle.fails("server-comms", "--host", "hub", "--thumbprint", "nope").err
    )
    assert (
        "not in the range"
        in tentacle.fails(
            "server-comms", "--host", "hub", "--port", "0", "--thumbprint", SERVER, code=2
        ).err
    )
    assert config.read_bytes() == before


def test_polling_proxy_is_recorded_and_its_password_never_shown(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "a")
    result = tentacle.ok("polling-proxy", "--proxyHost", "proxy.example", "--proxyPort", "3128",
                         "--proxyUsername", "me", "--proxyPassword", "s3cret")  # fmt: skip
    assert "s3cret" not in result.out
    assert shown(tentacle)["PollingProxy"] == "http://me@proxy.example:3128"
    assert "s3cret" not in tentacle.ok("show-configuration").out
    config = tentacle.config_home / "a" / "tentacle.yaml"
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    tentacle.ok("polling-proxy", "--proxyEnable", "false")
    assert shown(tentacle)["PollingProxy"] is None
    assert "--proxyHost is required" in tentacle.fails("polling-proxy", code=2).err


def addresses(tentacle: TentacleCli) -> list[tuple[str, str]]:
    return [(s["Address"], s["Thumbprint"]) for s in shown(tentacle)["PollingServers"]]


def test_a_servers_new_polling_port_updates_its_entry_in_place(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "a")
    tentacle.ok("server-comms", "--host", "hub", "--thumbprint", SERVER)
    tentacle.ok("server-comms", "--host", "node-2", "--thumbprint", SERVER)  # another node
    moved = tentacle.ok("server-comms", "--host", "hub", "--port", "20943", "--thumbprint", SERVER)
    assert "Polling https://hub:20943/ instead of https://hub:10943/" in moved.out
    assert addresses(tentacle) == [
        ("https://hub:20943/", SERVER),
        ("https://node-2:10943/", SERVER),
    ]


def test_remove_stops_polling_by_thumbprint_or_by_host_and_port(tentacle: TentacleCli) -> None:
    other = "CD" * 20
    tentacle.ok("create-instance", "--instance", "a")
    tentacle.ok("server-comms", "--host", "hub", "--thumbprint", SERVER)
    tentacle.ok("server-comms", "--host", "node-2", "--thumbprint", SERVER)
    tentacle.ok("server-comms", "--host", "elsewhere", "--port", "20943", "--thumbprint", other)
    removed = tentacle.ok("server-comms", "--remove", "--host", "Elsewhere", "--port", "20943")
    assert "No longer polling https://elsewhere:20943/" in removed.out
    assert addresses(tentacle) == [
        ("https://hub:10943/", SERVER),
        ("https://node-2:10943/", SERVER),
    ]
    removed = tentacle.ok("server-comms", "--remove", "--thumbprint", SERVER.lower())
    assert removed.out.count("No longer polling") == 2
    assert addresses(tentacle) == []


def test_remove_says_in_one_line_when_nothing_matched(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "a")
    tentacle.ok("server-comms", "--host", "hub", "--port", "20943", "--thumbprint", SERVER)
    config = tentacle.config_home / "a" / "tentacle.yaml"
    before = config.read_bytes()
    missed = tentacle.fails("server-comms", "--remove", "--host", "hub")  # port 10943
    assert missed.err.strip() == (
        "error: no polling server matches https://hub:10943/: this instance polls "
        f"https://hub:20943/ ({SERVER})"
    )
    missed = tentacle.fails("server-comms", "--remove", "--thumbprint", "CD" * 20)
    assert len(missed.err.strip().splitlines()) == 1
    assert "no polling server matches " + "CD" * 20 in missed.err
    refused = tentacle.fails("server-comms", "--remove", code=2)
    assert "--remove needs --thumbprint, or --host" in refused.err
    assert config.read_bytes() == before
