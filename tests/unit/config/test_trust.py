from __future__ import annotations

import pytest

from agent.certs import generate_identity
from agent.config.trust import (
    TrustedPeer,
    add_trusted_certificate,
    add_trusted_thumbprint,
    remove_trust,
)
from agent.errors import CertificateError

IDENTITY = generate_identity()


def test_a_bare_thumbprint_is_pending_until_its_certificate_arrives() -> None:
    peers = add_trusted_thumbprint((), IDENTITY.thumbprint.lower())
    assert peers == (TrustedPeer(IDENTITY.thumbprint),)
    assert peers[0].is_pending
    peers = add_trusted_certificate(peers, IDENTITY.certificate)
    assert len(peers) == 1
    assert not peers[0].is_pending
    assert peers[0].sha256 == IDENTITY.sha256


def test_a_pending_sha256_thumbprint_is_completed_by_its_certificate() -> None:
    peers = add_trusted_thumbprint((), IDENTITY.sha256)
    peers = add_trusted_certificate(peers, IDENTITY.certificate)
    assert [peer.thumbprint for peer in peers] == [IDENTITY.thumbprint]


def test_adding_twice_keeps_one_record() -> None:
    peers = add_trusted_certificate((), IDENTITY.certificate)
    assert add_trusted_certificate(peers, IDENTITY.certificate) == peers
    assert add_trusted_thumbprint(peers, IDENTITY.thumbprint) == peers
    assert add_trusted_thumbprint(peers, IDENTITY.sha256) == peers


def test_remove_by_either_thumbprint_and_report_whether_anything_went() -> None:
    other = generate_identity()
    peers = add_trusted_certificate((), IDENTITY.certificate)
    peers = add_trusted_certificate(peers, other.certificate)
    kept, removed = remove_trust(peers, IDENTITY.sha256.lower())
    assert removed
    assert [peer.thumbprint for peer in kept] == [other.thumbprint]
    assert remove_trust(kept, IDENTITY.thumbprint) == (kept, False)


def test_malformed_thumbprints_are_refused() -> None:
    with pytest.raises(CertificateError, match="malformed thumbprint"):
        add_trusted_thumbprint((), "not-a-thumbprint")
    with pytest.raises(CertificateError, match="malformed thumbprint"):
        remove_trust((), "1234")
