"""Trusted peers: the certificates an instance pins, by thumbprint.

A peer is trusted with its full certificate, because the side that accepts TLS
must load it as a trust anchor (see docs/architecture.md on pinning). A bare
thumbprint is a *pending* trust: recorded, but unusable until the certificate
that has that thumbprint is supplied.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from cryptography import x509

from agent.certs import (
    certificate_pem,
    load_certificate,
    parse_thumbprint,
    sha1_thumbprint,
    sha256_thumbprint,
)
from agent.errors import CertificateError


@dataclass(frozen=True)
class TrustedPeer:
    """One pinned peer: a certificate, or only a thumbprint while pending.

    ``thumbprint`` is the SHA-1 thumbprint when the certificate is known, else
    the thumbprint as given (SHA-1 or SHA-256), normalised to upper-case hex.
    """

    thumbprint: str
    certificate_pem: str | None = None

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> TrustedPeer:
        return cls(sha1_thumbprint(certificate), certificate_pem(certificate))

    @classmethod
    def pending(cls, thumbprint: str) -> TrustedPeer:
        """Raises CertificateError if ``thumbprint`` is malformed."""
        return cls(parse_thumbprint(thumbprint))

    @property
    def is_pending(self) -> bool:
        return self.certificate_pem is None

    @cached_property
    def certificate(self) -> x509.Certificate | None:
        if self.certificate_pem is None:
            return None
        return load_certificate(self.certificate_pem.encode("ascii"), "trusted certificate")

    @cached_property
    def sha256(self) -> str | None:
        if self.certificate is not None:
            return sha256_thumbprint(self.certificate)
        return self.thumbprint if len(self.thumbprint) == 64 else None

    def matches(self, thumbprint: str) -> bool:
        """True if ``thumbprint`` (normalised) is this peer's SHA-1 or SHA-256."""
        return thumbprint in (self.thumbprint, self.sha256)

    def check(self) -> None:
        """Raises CertificateError if the stored thumbprint is not the certificate's."""
        if self.certificate is not None and sha1_thumbprint(self.certificate) != self.thumbprint:
            raise CertificateError(
                f"trusted thumbprint {self.thumbprint} does not match its certificate, "
                f"whose thumbprint is {sha1_thumbprint(self.certificate)}"
            )


def remove_trust(
    peers: tuple[TrustedPeer, ...], thumbprint: str
) -> tuple[tuple[TrustedPeer, ...], bool]:
    """Drop every peer matching ``thumbprint``; also say whether any did."""
    wanted = parse_thumbprint(thumbprint)
    kept = tuple(peer for peer in peers if not peer.matches(wanted))
    return kept, len(kept) != len(peers)


def add_trusted_thumbprint(
    peers: tuple[TrustedPeer, ...], thumbprint: str
) -> tuple[TrustedPeer, ...]:
    """Add a pending trust, unless a peer with that thumbprint is already there."""
    wanted = parse_thumbprint(thumbprint)
    if any(peer.matches(wanted) for peer in peers):
        return peers
    return (*peers, TrustedPeer.pending(wanted))


def add_trusted_certificate(
    peers: tuple[TrustedPeer, ...], certificate: x509.Certificate
) -> tuple[TrustedPeer, ...]:
    """Trust ``certificate``; it completes a pending trust with its thumbprint."""
    new = TrustedPeer.from_certificate(certificate)
    sha256 = sha256_thumbprint(certificate)
    kept = tuple(
        peer for peer in peers if not peer.matches(new.thumbprint) and not peer.matches(sha256)
    )
    return (*kept, new)
