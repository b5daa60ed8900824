"""hub configure and hub show-configuration: the settings table's hub.yaml, and HTTPS on
a CA-signed certificate the operator gives (clients verify it against the CA, no pin)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent import __version__
from agent.hub.home import load_home
from agent.hub.keys import Permission
from agent.hub.server import HubServer
from tests.helpers.agent import AgentProcess
from tests.helpers.ca import ThrowawayCa
from tests.helpers.cli import HUB_TEST_ENV, TentacleCli
from tests.helpers.hub import new_key


@pytest.fixture
def ca(tmp_path: Path) -> ThrowawayCa:
    return ThrowawayCa.create()


@pytest.fixture
def home(tentacle: TentacleCli, tmp_path: Path) -> Path:
    tentacle.ok("hub", "create", "--home", str(tmp_path / "hub"))
    return tmp_path / "hub"


@asynccontextmanager
async def served(home: Path) -> AsyncIterator[HubServer]:
    """The hub in ``home`` as hub.yaml says, serving on a free loopback port."""
    server = HubServer(load_home(home, HUB_TEST_ENV), __version__)
    await server.start("127.0.0.1:0", polling_port=0)
    try:
        yield server
    finally:
        await server.stop()


async def _presented(url: str, context: ssl.SSLContext) -> tuple[int, x509.Certificate]:
    """(status of GET /api, the certificate the hub presented) over a verifying client."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(url + "api") as response,
    ):
        status = response.status
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(True)
    writer.close()
    await writer.wait_closed()
    return status, x509.load_der_x509_certificate(der)


async def test_the_hub_serves_https_with_a_ca_signed_certificate(
    tentacle: TentacleCli, home: Path, ca: ThrowawayCa, tmp_path: Path
) -> None:
    leaf = ca.issue(tmp_path / "given.pem")
    result = tentacle.ok(
        "hub", "configure", "--home", str(home), "--https-certificate", str(tmp_path / "given.pem")
    )
    assert f"copied to {home / 'https.pem'}" in result.out
    assert (home / "https.pem").stat().st_mode & 0o777 == 0o600
    (tmp_path / "given.pem").unlink()  # the hub holds its own copy
    shown = tentacle.ok("hub", "show-configuration", "--home", str(home), "--format", "json")
    assert shown.json()["HttpsCertificate"] == str(home / "https.pem")
    async with served(home) as server:
        trusting = ssl.create_default_context(cafile=ca.write_certificate(tmp_path / "ca.pem"))
        status, presented = await _presented(server.url, trusting)
        assert (status, presented) == (200, leaf)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _presented(server.url, ssl.create_default_context())  # not trusting the CA


async def test_register_worker_verifies_a_ca_signed_hub_without_a_thumbprint(
    tentacle: TentacleCli, home: Path, ca: ThrowawayCa, tmp_path: Path
) -> None:
    ca.issue(tmp_path / "given.pem")
    given = str(tmp_path / "given.pem")
    tentacle.ok("hub", "configure", "--home", str(home), "--https-certificate", given)
    AgentProcess(tentacle)  # the instance "agent"
    async with served(home) as server:
        key = await new_key(server.home, "admin", Permission.CONFIGURE_SERVER)
        args = ["register-worker", "--instance", "agent", "--server", server.url, "--apikey",
                key, "--workerpool", "Default Worker Pool", "--name", "ca-1",
                "--publicHostName", "127.0.0.1", "--tentacle-comms-port", "10999"]  # fmt: skip
        refused = await asyncio.to_thread(tentacle.fails, *args)
        assert "presented a certificate this machine does not trust" in refused.err
        assert "its `HTTPS thumbprint:` line if it has one" in refused.err  # which one to pin
        ca_file = {"SSL_CERT_FILE": str(ca.write_certificate(tmp_path / "ca.pem"))}
        registered = await asyncio.to_thread(tentacle.ok, *args, env=ca_file)
        assert "Registered ca-1 as Workers-1" in registered.out


def _mismatched(ca: ThrowawayCa, tmp_path: Path) -> Path:
    """A certificate with another certificate's key."""
    ca.issue(tmp_path / "one.pem")
    ca.issue(tmp_path / "other.pem")
    certificate = (tmp_path / "one.pem").read_bytes().split(b"-----END CERTIFICATE-----\n")[0]
    key = (tmp_path / "other.pem").read_bytes().split(b"-----END CERTIFICATE-----\n")[1]
    path = tmp_path / "mismatched.pem"
    path.write_bytes(certificate + b"-----END CERTIFICATE-----\n" + key)
    return path


def test_a_certificate_that_will_not_do_is_refused_and_nothing_changes(
    tentacle: TentacleCli, home: Path, ca: ThrowawayCa, tmp_path: Path
) -> None:
    before = (home / "hub.yaml").read_text()
    certificate_only = tmp_path / "certificate.pem"
    certificate_only.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    cases = {
        tmp_path / "missing.pem": "no certificate at",
        certificate_only: "not a valid identity file",
        _mismatched(ca, tmp_path): "the certificate does not match the private key",
    }
    for path, problem in cases.items():
        args = ("hub", "configure", "--home", str(home), "--https-certificate", str(path))
        error = tentacle.fails(*args).err
        assert error.startswith("error: --https-certificate: "), error
        assert problem in error, error
    assert (home / "hub.yaml").read_text() == before
    assert not (home / "https.pem").exists()


def test_configure_changes_the_table_settings_and_show_configuration_shows_them(
    tentacle: TentacleCli, home: Path
) -> None:
    result = tentacle.ok("hub", "configure", "--home", str(home), "--listen", "127.0.0.1:9065",
                         "--polling-port", "10950", "--node-name", "node-b",
                         "--task-cap", "9")  # fmt: skip
    assert "Listen: 127.0.0.1:8065 -> 127.0.0.1:9065" in result.out
    assert "TaskCap: 5 -> 9" in result.out
    text = (home / "hub.yaml").read_text()
    assert "Listen: 127.0.0.1:9065\n" in text
    assert "PollingPort: 10950\n" in text
    shown = tentacle.ok("hub", "show-configuration", "--home", str(home), "--format", "json")
    assert {k: shown.json()[k] for k in ("Listen", "PollingPort", "NodeName", "TaskCap")} == {
        "Listen": "127.0.0.1:9065", "PollingPort": 10950, "NodeName": "node-b", "TaskCap": 9,
    }  # fmt: skip
    assert shown.json()["Thumbprint"] == load_home(home).identity().thumbprint
    environ = {"TENTACLE_HUB_TASK_CAP": "3"}
    people = tentacle.ok("hub", "show-configuration", "--home", str(home), env=environ).out
    assert "3 (from TENTACLE_HUB_TASK_CAP)" in people
    bad = tentacle.fails("hub", "configure", "--home", str(home), "--listen", "nocolon", code=2)
    assert "Listen: expected HOST:PORT" in bad.err
    assert "Nothing changed" in tentacle.ok("hub", "configure", "--home", str(home)).out


def test_a_wrong_hub_yaml_is_named_with_its_line(tentacle: TentacleCli, home: Path) -> None:
    settings = home / "hub.yaml"
    settings.write_text(settings.read_text().replace("TaskCap: 5", "TaskCap: many"))
    result = tentacle.fails("hub", "show-configuration", "--home", str(home))
    assert f"{settings} line 6: TaskCap: expected a whole number" in result.err
    settings.write_text("Listen: 127.0.0.1:1\nTaskKap: 2\n")
    result = tentacle.fails("hub", "show-configuration", "--home", str(home))
    assert "line 2: unknown setting 'TaskKap' (known settings: Database, Listen" in result.err
    settings.write_text("Listen: 127.0.0.1:1\n")
    assert (
        "Database is required"
        in tentacle.fails("hub", "show-configuration", "--home", str(home)).err
    )


def test_the_hub_commands_apply_the_environment_over_hub_yaml(
    tentacle: TentacleCli, home: Path
) -> None:
    wrong = {"TENTACLE_HUB_DATABASE": "mysql://nope"}
    expected = "environment variable TENTACLE_HUB_DATABASE: Database: expected a sqlite:///"
    for verb in (("create-api-key", "--name", "ci"), ("serve",), ("show-configuration",)):
        result = tentacle.fails("hub", verb[0], "--home", str(home), *verb[1:], env=wrong)
        assert expected in result.err, (verb, result)
