"""Identities (a private key and its self-signed certificate) and thumbprints.

An instance proves who it is with a long-lived self-signed certificate; peers
pin it by thumbprint. Thumbprints are shown as Octopus shows them: the SHA-1 of
the DER certificate in upper-case hex, with the SHA-256 beside it.

The identity file holds the private key and the certificate together in PEM,
so that replacing it is one atomic write and the pair can never mismatch.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.atomicfile import PRIVATE, write_atomic
from agent.errors import CertificateError

IDENTITY_FILE_NAME = "identity.pem"
DEFAULT_COMMON_NAME = "Tentacle"
VALIDITY = datetime.timedelta(days=365 * 100)

_HEX = re.compile(r"[0-9A-F]+")
_SEPARATORS = re.compile(r"[\s:]")
SHA1_HEX_LENGTH = 40
SHA256_HEX_LENGTH = 64


def sha1_thumbprint(certificate: x509.Certificate) -> str:
    """The Octopus-style thumbprint: SHA-1 of the DER encoding, upper-case hex."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def sha256_thumbprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, upper-case hex."""
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


def parse_thumbprint(text: str) -> str:
    """Normalise a thumbprint typed by a person to upper-case hex.

    Accepts SHA-1 (40 hex digits) or SHA-256 (64), in any case, with optional
    colons or spaces between digits. Raises CertificateError otherwise.
    """
    digits = _SEPARATORS.sub("", text).upper()
    if _HEX.fullmatch(digits) and len(digits) in (SHA1_HEX_LENGTH, SHA256_HEX_LENGTH):
        return digits
    raise CertificateError(
        f"malformed thumbprint {text!r}: expected 40 (SHA-1) or 64 (SHA-256) hexadecimal digits"
    )


def load_certificate(data: bytes, source: str) -> x509.Certificate:
    """Parse one X.509 certificate from PEM or DER bytes.

    ``source`` names where the bytes came from, for the error message.
    Raises CertificateError if the bytes are not a certificate.
    """
    pem = b"-----BEGIN" in data
    try:
        return x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
    except ValueError:
        # the parser's own message names ASN.1 tags, which help no one here
        found = "a PEM block that holds no readable certificate" if pem else "neither PEM nor DER"
        raise CertificateError(
            f"{source} is not an X.509 certificate: it is {found}; expected a PEM file "
            "(-----BEGIN CERTIFICATE-----) or DER bytes, as export-certificate writes"
        ) from None


def certificate_pem(certificate: x509.Certificate) -> str:
    """The certificate as PEM text."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class Identity:
    """A private key and the self-signed certificate that goes with it."""

    private_key_pem: bytes
    certificate_pem: bytes

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem)

    @property
    def thumbprint(self) -> str:
        """SHA-1 thumbprint, upper-case hex, as Octopus shows it."""
        return sha1_thumbprint(self.certificate)

    @property
    def sha256(self) -> str:
        return sha256_thumbprint(self.certificate)

    def to_pem(self) -> bytes:
        return self.private_key_pem + self.certificate_pem

    def __repr__(self) -> str:  # never let a private key reach a log line
        return f"Identity(thumbprint={self.thumbprint})"


def generate_identity(common_name: str = DEFAULT_COMMON_NAME) -> Identity:
    """A new ECDSA P-256 key with a self-signed SHA-256 certificate valid for 100 years.

    P-256 rather than Tentacle's RSA 2048: stronger (about RSA 3072) and its TLS
    handshakes are several times cheaper; see docs/decisions.md.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Identity(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
    )


def save_identity(path: Path, identity: Identity) -> None:
    """Write the identity atomically with mode 0600."""
    write_atomic(path, identity.to_pem(), mode=PRIVATE)


def exposed_identity_warning(path: Path) -> str | None:
    """A warning if the identity file at ``path`` can be read or written by other users."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None
    if mode & 0o077 == 0:
        return None
    return (
        f"{path} holds the private key but its mode is {mode:04o}: other users may read it; "
        f"run: chmod 600 {path}"
    )


def load_identity(path: Path) -> Identity:
    """Read an identity file written by :func:`save_identity`.

    Raises CertificateError naming the file if it is missing, unreadable, or does
    not hold exactly a private key and the certificate that matches it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"no certificate at {path}") from None
    except OSError as error:
        raise CertificateError(f"cannot read the certificate file {path}: {error}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
        certificate = x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError) as error:
        raise CertificateError(f"{path} is not a valid identity file: {error}") from None
    if certificate.public_key() != key.public_key():
        raise CertificateError(f"{path}: the certificate does not match the private key")
    return Identity(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
    )
