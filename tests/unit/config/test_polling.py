"""Polling entries: one per hub node, whatever its port was."""

from __future__ import annotations

from agent.config.polling import PollingServer, with_server, without_servers

HUB, OTHER = "AB" * 20, "CD" * 20


def at(host: str, port: int, thumbprint: str = HUB) -> PollingServer:
    return PollingServer.at(host, port, thumbprint)


def test_a_hub_node_whose_polling_port_moved_is_updated_in_place() -> None:
    servers = (at("hub", 10943), at("other", 10943, OTHER))
    assert with_server(servers, at("hub", 20943)) == (at("hub", 20943), at("other", 10943, OTHER))


def test_the_same_hub_on_another_host_is_another_node() -> None:
    servers = (at("node-1", 10943),)
    assert with_server(servers, at("node-2", 10943)) == (at("node-1", 10943), at("node-2", 10943))


def test_another_certificate_at_the_same_address_replaces_the_entry() -> None:
    assert with_server((at("hub", 10943),), at("hub", 10943, OTHER)) == (at("hub", 10943, OTHER),)


def test_another_hub_on_the_same_host_is_kept() -> None:
    servers = (at("box", 10943),)
    assert with_server(servers, at("box", 20943, OTHER)) == (
        at("box", 10943),
        at("box", 20943, OTHER),
    )


def test_several_entries_of_one_node_left_by_older_versions_become_one() -> None:
    older = (
        PollingServer("https://HUB:10943/", HUB),  # written by hand, upper-case
        at("other", 10943, OTHER),
        at("hub", 10950),
        at("hub", 10960),
    )
    assert with_server(older, at("hub", 10970)) == (at("hub", 10970), at("other", 10943, OTHER))


def test_without_servers_splits_kept_and_removed() -> None:
    servers = (at("hub", 10943), at("other", 10943, OTHER))
    kept, removed = without_servers(servers, lambda s: s.thumbprint == OTHER)
    assert (kept, removed) == ((at("hub", 10943),), (at("other", 10943, OTHER),))
