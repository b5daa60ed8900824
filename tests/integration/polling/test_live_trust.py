"""Live trust: the polling listener's trusted certificates change while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.certs import generate_identity
from agent.client import AgentClient, Endpoint, PollingListener
from agent.client.polling_listener import NO_LONGER_TRUSTED
from agent.errors import CertificateError
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually


def refusals_of(caplog: pytest.LogCaptureFixture, thumbprint: str) -> int:
    """How many handshakes the listener has refused for the certificate ``thumbprint``."""
    needle = f"refused a client presenting certificate {thumbprint}"
    return sum(needle in record.getMessage() for record in caplog.records)


async def answers(listener: PollingListener, agent: AgentProcess) -> bool:
    endpoint = Endpoint(agent.subscription, agent.thumbprint)
    async with AgentClient.polling(listener, endpoint, agent.settings()) as hub:
        return bool((await hub.capabilities())["AgentVersion"])


async def test_an_agent_is_trusted_and_distrusted_while_the_listener_runs(
    tentacle: TentacleCli, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known = AgentProcess(tentacle)
    await known.poll_a_listener()  # the listener trusts this agent from the start only
    listener = known.listener
    assert listener is not None
    address = known.instance.config.polling_servers[0]
    host, port = address.address.removeprefix("https://").rstrip("/").rsplit(":", 1)
    newcomer = AgentProcess(TentacleCli(tmp_path / "newcomer"))
    newcomer.poll(host, int(port), known.caller.thumbprint)
    known.start()
    newcomer.start()
    try:
        first = await listener.channel(known.subscription, known.thumbprint)
        await eventually(lambda: refusals_of(caplog, newcomer.thumbprint) > 0,
                         "the listener refuses the newcomer, unknown at start")  # fmt: skip
        assert newcomer.subscription not in listener.connected()

        assert listener.trust(newcomer.identity.certificate_pem.decode()) == newcomer.thumbprint
        assert listener.trusted() == sorted([known.thumbprint, newcomer.thumbprint])
        channel = await listener.channel(newcomer.subscription, newcomer.thumbprint)
        assert await answers(listener, newcomer)  # no restart needed

        assert await listener.distrust(newcomer.identity.sha256)  # either thumbprint will do
        assert channel.closed.is_set()  # at once: closed before distrust() returns
        assert channel.close_reason == NO_LONGER_TRUSTED
        assert newcomer.subscription not in listener.connected()
        before = refusals_of(caplog, newcomer.thumbprint)
        await eventually(lambda: refusals_of(caplog, newcomer.thumbprint) > before,
                         "the distrusted agent dials again and is refused")  # fmt: skip
        assert newcomer.subscription not in listener.connected()
        assert listener.trusted() == [known.thumbprint]

        assert not first.closed.is_set()  # the other agent never noticed
        assert await answers(listener, known)
    finally:
        newcomer.stop()
        known.stop()
        await listener.stop()


async def test_set_trusted_closes_the_connections_of_the_certificates_it_leaves_out(
    tentacle: TentacleCli,
) -> None:
    agent = AgentProcess(tentacle)
    await agent.poll_a_listener()
    listener = agent.listener
    assert listener is not None
    agent.start()
    other = generate_identity().certificate_pem.decode()
    try:
        channel = await listener.channel(agent.subscription, agent.thumbprint)
        await listener.set_trusted([agent.identity.certificate_pem.decode(), other])
        assert not channel.closed.is_set()  # still trusted: untouched
        await listener.set_trusted([other])
        assert channel.closed.is_set()
        assert listener.connected() == {}
    finally:
        agent.stop()
        await listener.stop()


async def test_trust_refuses_what_is_not_a_certificate_or_a_thumbprint() -> None:
    hub = generate_identity()
    from agent import __version__
    from agent.transport.settings import ChannelSettings

    listener = PollingListener(ChannelSettings(hub, "hub", __version__), [])
    with pytest.raises(CertificateError, match="is not an X.509 certificate.*expected a PEM"):
        listener.trust("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateError, match="malformed thumbprint 'xyz': expected 40"):
        await listener.distrust("xyz")
    with pytest.raises(CertificateError):  # all or nothing
        await listener.set_trusted([hub.certificate_pem.decode(), "junk"])
    assert listener.trusted() == []
    assert not await listener.distrust("AB" * 20)  # not trusted: nothing to do
