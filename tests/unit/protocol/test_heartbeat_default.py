"""The default heartbeat: what an idle connection costs, and how soon a dead peer is found."""

from __future__ import annotations

from agent import __version__
from agent.certs import generate_identity
from agent.config.model import DEFAULT_HEARTBEAT_INTERVAL as CONFIGURED
from agent.protocol import events as ev
from agent.transport.settings import ChannelSettings


def test_an_idle_polling_connection_pings_every_30_s_and_drops_a_dead_peer_within_90() -> None:
    settings = ChannelSettings(generate_identity(), "test", __version__)
    agent = settings.connection(dialer=True, now=0.0)  # a polling agent dials
    listener = settings.connection(dialer=False, now=0.0)
    agent.frames_to_send(), listener.frames_to_send()  # the hellos, not heartbeats
    assert agent.tick(29.9) == []
    assert agent.frames_to_send() == []
    assert agent.next_tick() == 30.0
    agent.tick(30.0)
    assert len(agent.frames_to_send()) == 1  # the ping
    assert listener.next_tick() == 45.0  # the acceptor only answers, unless the dialer stops
    assert listener.tick(90.0) == [ev.PeerSilent(90.0)]
    assert settings.heartbeat_interval == CONFIGURED  # the agent's setting defaults to the same
