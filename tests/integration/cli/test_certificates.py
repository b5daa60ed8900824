"""new-certificate, show-thumbprint, export-certificate through the real command."""

from __future__ import annotations

import hashlib
import re
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers.cli import TentacleCli


@pytest.fixture
def instance(tentacle: TentacleCli) -> TentacleCli:
    tentacle.ok("create-instance", "--instance", "a")
    return tentacle


def thumbprints(tentacle: TentacleCli, *args: str) -> dict[str, str]:
    shown: dict[str, str] = tentacle.ok("show-thumbprint", *args, "--format", "json").json()
    return shown


def test_new_certificate_stores_a_private_key_0600_and_never_prints_it(
    instance: TentacleCli,
) -> None:
    result = instance.ok("new-certificate", "--instance", "a")
    identity = instance.config_home / "a" / "identity.pem"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in identity.read_text()
    assert "PRIVATE" not in result.out + result.err
    assert thumbprints(instance)["Thumbprint"] in result.out


def test_thumbprints_match_the_exported_certificate(instance: TentacleCli) -> None:
    instance.ok("new-certificate")
    shown = thumbprints(instance, "--instance", "a")
    assert re.fullmatch(r"[0-9A-F]{40}", shown["Thumbprint"])
    assert re.fullmatch(r"[0-9A-F]{64}", shown["Sha256"])
    exported = instance.root / "a.pem"
    instance.ok("export-certificate", "--file", str(exported))
    text = exported.read_text()
    assert "PRIVATE" not in text
    der = x509.load_pem_x509_certificate(text.encode()).public_bytes(serialization.Encoding.DER)
    assert shown["Thumbprint"] == hashlib.sha1(der).hexdigest().upper()
    assert shown["Sha256"] == hashlib.sha256(der).hexdigest().upper()
    assert instance.ok("export-certificate", "--file", "-").out == text
    lines = instance.ok("show-thumbprint").out.splitlines()
    assert lines == [f"Thumbprint: {shown['Thumbprint']}", f"SHA-256:    {shown['Sha256']}"]


def test_if_blank_keeps_the_existing_certificate(instance: TentacleCli) -> None:
    instance.ok("new-certificate")
    first = thumbprints(instance)
    result = instance.ok("new-certificate", "--if-blank")
    assert "already has a certificate" in result.out
    assert thumbprints(instance) == first


def test_a_new_certificate_replaces_the_old_and_warns(instance: TentacleCli) -> None:
    instance.ok("new-certificate")
    first = thumbprints(instance)["Thumbprint"]
    result = instance.ok("new-certificate")
    assert first in result.err
    assert "must trust the new one" in result.err
    assert thumbprints(instance)["Thumbprint"] != first


def test_show_thumbprint_without_a_certificate_explains(instance: TentacleCli) -> None:
    failure = instance.fails("show-thumbprint")
    assert failure.err == (
        f"error: instance 'a' has no certificate yet (no {instance.config_home / 'a'}"
        "/identity.pem); create one with: tentacle new-certificate --instance a\n"
    )
    instance.fails("export-certificate", "--file", str(instance.root / "x.pem"))
    assert not (instance.root / "x.pem").exists()


def test_an_identity_file_others_can_read_is_warned_about(instance: TentacleCli) -> None:
    instance.ok("new-certificate")
    path = instance.config_home / "a" / "identity.pem"
    assert instance.ok("show-thumbprint").err == ""
    path.chmod(0o644)
    warned = instance.ok("show-thumbprint").err
    assert warned == (
        f"warning: {path} holds the private key but its mode is 0644: other users may read it; "
        f"run: chmod 600 {path}\n"
    )


def test_a_corrupt_identity_file_is_named(instance: TentacleCli) -> None:
    (instance.config_home / "a" / "identity.pem").write_text("scrambled")
    failure = instance.fails("show-thumbprint")
    assert "identity.pem is not a valid identity file" in failure.err
    failure = instance.fails("new-certificate", "--if-blank")
    assert "identity.pem" in failure.err
    replaced = instance.ok("new-certificate")
    assert "replaces an unreadable certificate" in replaced.err
    assert thumbprints(instance)["Thumbprint"] in replaced.out


def test_export_into_a_missing_folder_fails_cleanly(instance: TentacleCli) -> None:
    instance.ok("new-certificate")
    failure = instance.fails("export-certificate", "--file", str(instance.root / "no" / "a.pem"))
    assert failure.err.strip() == f"error: No such file or directory: {instance.root}/no/a.pem"
