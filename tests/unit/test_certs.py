from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from agent.certs import (
    Identity,
    generate_identity,
    load_certificate,
    load_identity,
    parse_thumbprint,
    save_identity,
    sha1_thumbprint,
)
from agent.errors import CertificateError


@pytest.fixture(scope="module")
def identity() -> Identity:
    return generate_identity()


def test_thumbprint_is_upper_case_sha1_of_the_der_certificate(identity: Identity) -> None:
    der = identity.certificate.public_bytes(serialization.Encoding.DER)
    assert identity.thumbprint == hashlib.sha1(der).hexdigest().upper()
    assert identity.sha256 == hashlib.sha256(der).hexdigest().upper()


def test_certificate_is_self_signed_long_lived_p256(identity: Identity) -> None:
    certificate = identity.certificate
    assert certificate.issuer == certificate.subject
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days > 365 * 99
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    certificate.verify_directly_issued_by(certificate)


def test_each_identity_is_new(identity: Identity) -> None:
    assert generate_identity().thumbprint != identity.thumbprint


def test_repr_never_shows_the_private_key(identity: Identity) -> None:
    assert "PRIVATE" not in repr(identity)
    assert identity.thumbprint in repr(identity)


def test_saved_identity_is_private_and_loads_back(tmp_path: Path, identity: Identity) -> None:
    path = tmp_path / "identity.pem"
    save_identity(path, identity)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path) == identity


def test_identity_with_a_foreign_key_is_refused(tmp_path: Path, identity: Identity) -> None:
    other = generate_identity()
    path = tmp_path / "identity.pem"
    path.write_bytes(other.private_key_pem + identity.certificate_pem)
    with pytest.raises(CertificateError, match="does not match the private key"):
        load_identity(path)


@pytest.mark.parametrize("content", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nxx\n"])
def test_corrupt_identity_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "identity.pem"
    path.write_bytes(content)
    with pytest.raises(CertificateError, match="identity.pem"):
        load_identity(path)


def test_missing_identity_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="no certificate at .*nothing.pem"):
        load_identity(tmp_path / "nothing.pem")


def test_certificate_loads_from_pem_and_der(identity: Identity) -> None:
    der = identity.certificate.public_bytes(serialization.Encoding.DER)
    assert sha1_thumbprint(load_certificate(der, "x")) == identity.thumbprint
    assert sha1_thumbprint(load_certificate(identity.certificate_pem, "x")) == identity.thumbprint


@pytest.mark.parametrize("data", [b"", b"hello", b"-----BEGIN CERTIFICATE-----\n!!\n"])
def test_not_a_certificate_names_its_source(data: bytes) -> None:
    with pytest.raises(CertificateError, match=r"peer\.pem is not an X\.509 certificate"):
        load_certificate(data, "peer.pem")


def test_a_private_key_is_not_a_certificate(identity: Identity) -> None:
    with pytest.raises(CertificateError, match="not an X.509 certificate"):
        load_certificate(identity.private_key_pem, "key.pem")


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("aaec665d6baf0ff8dad22952610fa4a569ee86c3", "AAEC665D6BAF0FF8DAD22952610FA4A569EE86C3"),
        (
            "AA:EC:66:5D:6B:AF:0F:F8:DA:D2:29:52:61:0F:A4:A5:69:EE:86:C3",
            "AAEC665D6BAF0FF8DAD22952610FA4A569EE86C3",
        ),
        (" AAEC665D6BAF0FF8DAD22952610FA4A569EE86C3 ", "AAEC665D6BAF0FF8DAD22952610FA4A569EE86C3"),
        ("ab" * 32, "AB" * 32),
    ],
)
def test_thumbprints_are_normalised(typed: str, normalised: str) -> None:
    assert parse_thumbprint(typed) == normalised


@pytest.mark.parametrize(
    "typed", ["", "AB", "G" * 40, "A" * 39, "A" * 41, "A" * 63, "0x" + "A" * 38]
)
def test_malformed_thumbprints_say_what_was_expected(typed: str) -> None:
    with pytest.raises(CertificateError, match="expected 40 .SHA-1. or 64 .SHA-256."):
        parse_thumbprint(typed)


@given(st.text(max_size=80))
def test_thumbprint_parser_accepts_only_hex_of_the_right_length(text: str) -> None:
    try:
        parsed = parse_thumbprint(text)
    except CertificateError:
        return
    assert len(parsed) in (40, 64)
    assert set(parsed) <= set("0123456789ABCDEF")
