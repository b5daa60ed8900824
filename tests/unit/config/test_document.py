from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.certs import generate_identity
from agent.config import InstanceConfig, TrustedPeer, load_config, parse_config, render_config
from agent.config.polling import PollingServer
from agent.errors import ConfigError

CONFIG = Path("/srv/tentacle/a/tentacle.yaml")


def test_empty_file_means_defaults_with_home_beside_the_config() -> None:
    config = parse_config("", CONFIG)
    assert config == InstanceConfig(home=Path("/srv/tentacle/a"))
    assert config.port == 10933
    assert config.applications == Path("/srv/tentacle/a/Applications")


def test_rendered_config_reads_back_equal() -> None:
    certificate = generate_identity().certificate
    config = InstanceConfig(
        home=Path("/var/lib/tentacle"),
        application_directory=Path("/opt/apps"),
        port=0,
        listen_ip="::1",
        no_listen=True,
        polling_connection_count=7,
        trusted=(TrustedPeer.from_certificate(certificate), TrustedPeer.pending("AB" * 20)),
        subscription_id="poll://abcdefghjkmnpqrstuv2/",
        polling_servers=(PollingServer.at("hub", 10943, "CD" * 20),),
    )
    assert parse_config(render_config(config), CONFIG) == config


@given(
    port=st.integers(0, 65535),
    count=st.integers(1, 512),
    no_listen=st.booleans(),
    home=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1).map(
        lambda name: Path("/") / name.replace("/", "_")
    ),
)
def test_any_valid_config_round_trips(port: int, count: int, no_listen: bool, home: Path) -> None:
    config = InstanceConfig(
        home=home, port=port, polling_connection_count=count, no_listen=no_listen
    )
    assert parse_config(render_config(config), CONFIG) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port: [1\n", r"line 2: not valid YAML"),
        ("- a\n- b\n", r"line 1: expected a mapping"),
        ("port: 10933\nprot: 1\n", r"line 2: unknown setting 'prot' \(known settings: home,"),
        ("home: /x\nport: 70000\n", r"line 2: port: expected a port number from 0 to 65535"),
        ("port: yes\n", r"line 1: port: expected a port number"),
        ("\n\nno_listen: maybe\n", r"line 3: no_listen: expected true or false"),
        ("home: relative/dir\n", r"line 1: home: expected an absolute path"),
        ("listen_ip: 300.1.1.1\n", r"line 1: listen_ip: expected an IP address or 'any'"),
        ("polling_connection_count: 0\n", r"line 1: polling_connection_count: expected a whole"),
        ("trusted: AB\n", r"line 1: trusted: expected a list of peers"),
        ("subscription_id: poll://x/\n", r"line 1: subscription_id: expected poll://"),
        (
            "polling_servers:\n- address: ftp://x\n  thumbprint: AB\n",
            r"line 1: polling_servers: expected an address like https://HOST:10943/",
        ),
        ("trusted:\n- {}\n", r"line 2: a trusted peer needs 'thumbprint'"),
        ("trusted:\n- thumbprint: XYZ\n", r"line 2: malformed thumbprint 'XYZ'"),
        ("trusted:\n- thumbprint: " + "A" * 40 + "\n  colour: red\n", r"line 2: unknown keys"),
        (
            "trusted:\n- thumbprint: " + "A" * 40 + "\n  certificate: nope\n",
            r"line 2: trusted certificate is not an X.509 certificate",
        ),
    ],
)
def test_invalid_config_names_the_file_the_line_and_what_was_expected(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{CONFIG} {message}"):
        parse_config(text, CONFIG)


def test_trusted_certificate_must_match_its_recorded_thumbprint() -> None:
    certificate = generate_identity().certificate
    peer = TrustedPeer.from_certificate(certificate)
    forged = TrustedPeer("AB" * 20, peer.certificate_pem)
    text = render_config(InstanceConfig(home=Path("/x"), trusted=(forged,)))
    with pytest.raises(ConfigError, match=f"does not match its certificate.*{peer.thumbprint}"):
        parse_config(text, CONFIG)


def test_missing_and_undecodable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00port")
    with pytest.raises(ConfigError, match=f"cannot read config file {binary}"):
        load_config(binary)
