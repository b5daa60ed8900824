"""Discovering a listening agent before it is added: who it is (the certificate it
presents) and, if it already trusts us, what it is (its capabilities).

The caller does not know the agent's thumbprint yet, so nothing can be pinned:

1. A TLS handshake alone, presenting our certificate and accepting whatever the
   agent presents. Nothing is sent over it; the agent's certificate is read and
   the connection closed. This needs no trust either way, so it always tells
   who is listening (TLS 1.3: the agent judges our certificate after the
   handshake has completed on our side).
2. A channel pinned to the certificate just read (so a second connection can
   not be answered by someone else), and one read-only call, capabilities. This
   works only if the agent trusts us; if it does not, it refuses us and the
   result says so (``trusts_us`` False, ``refusal`` why) with no facts.

Nothing the agent would act on is ever sent: discovery changes nothing on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Any

from agent.certs import certificate_pem, load_certificate
from agent.client.agent_client import AgentClient, Endpoint
from agent.errors import ConnectionLost, TentacleError, TrustError
from agent.protocol.retry import Backoff
from agent.transport.settings import ChannelSettings
from agent.transport.tls import client_context, thumbprints_of

DISCOVER_TIMEOUT = 10.0  # seconds for each of the two steps


@dataclass(frozen=True)
class Discovered:
    """A listening agent as discovery found it. ``capabilities`` is None when the agent
    does not trust us (``refusal`` then says how it refused)."""

    url: str
    thumbprint: str  # SHA-1, upper-case hex, as Octopus shows it
    sha256: str
    certificate_pem: str
    capabilities: dict[str, Any] | None
    refusal: str | None = None  # why there are no capabilities
    refused_us: bool = False  # the agent refused our certificate (it does not trust us)

    @property
    def trusts_us(self) -> bool:
        return self.capabilities is not None


def listening_url(host: str, port: int) -> str:
    """``https://host:port/`` ([::1] for IPv6), as Octopus writes a listening endpoint."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"https://{shown}:{port}/"


async def presented_certificate(
    host: str, port: int, settings: ChannelSettings, timeout: float = DISCOVER_TIMEOUT
) -> bytes:
    """The DER certificate the TLS server at ``host:port`` presents (step 1 above).

    Raises ConnectionLost naming the address: nothing listens, it did not answer
    within ``timeout``, or it did not complete a TLS handshake (not an agent).
    """
    where = f"{host}:{port}"
    context = client_context(settings.identity)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname="")
    except TimeoutError:
        raise ConnectionLost(f"cannot connect to {where}: no answer within {timeout:g} s") from None
    except ssl.SSLError as error:
        raise ConnectionLost(
            f"{where} answered but did not complete a TLS handshake ({error.reason or error}): "
            "is it a listening agent?"
        ) from None
    except OSError as error:
        raise ConnectionLost(f"cannot connect to {where}: {error.strerror or error}") from None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):  # it may refuse our certificate now
            await writer.wait_closed()
    if not der:
        raise ConnectionLost(f"{where} presented no certificate: it is not a listening agent")
    return bytes(der)


QUICK = Backoff(first=0.2, cap=1.0, deadline=3.0)


async def discover(
    host: str, port: int, settings: ChannelSettings, timeout: float = DISCOVER_TIMEOUT
) -> Discovered:
    """Who listens at ``host:port`` and, if it trusts us, its capabilities.

    Raises ConnectionLost when nothing usable answers there (see
    :func:`presented_certificate`); an agent that refuses us is not an error.
    """
    der = await presented_certificate(host, port, settings, timeout)
    sha1, sha256 = thumbprints_of(der)
    pem = certificate_pem(load_certificate(der, f"the certificate of {host}:{port}"))
    url = listening_url(host, port)
    # a few quick retries: discovery answers a person waiting, and a refusal is an answer
    client = AgentClient(Endpoint(url, sha1), settings, call_timeout=timeout, retry=QUICK)
    try:
        async with client:
            capabilities = await client.capabilities()
    except TrustError as error:  # the pin held (step 1's certificate): it refused ours
        return Discovered(url, sha1, sha256, pem, None, str(error), refused_us=True)
    except ConnectionLost as error:
        return Discovered(url, sha1, sha256, pem, None, str(error))
    except (TimeoutError, TentacleError) as error:
        return Discovered(url, sha1, sha256, pem, None, f"capabilities failed: {error}")
    return Discovered(url, sha1, sha256, pem, capabilities)
