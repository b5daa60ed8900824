"""TLS contexts with pinned certificates, both ways (see docs/architecture.md).

Python's ssl module has no verify callback, so the two sides pin differently:

* the side that *accepts* TLS loads the trusted peers' own certificates as its
  only trust anchors (a self-signed leaf anchors itself) and asks for a client
  certificate, optionally, so that a browser without one still gets a page;
* the side that *dials* accepts whatever the handshake brings and checks the
  peer certificate's thumbprint before it sends a single byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.certs import Identity, parse_thumbprint
from agent.errors import TrustError

log = logging.getLogger(__name__)

_FATAL = 2
_REFUSAL_ALERTS = {42: "bad certificate", 46: "certificate unknown", 48: "unknown CA"}
_CERTIFICATE_MESSAGE = 11
_ALERT_RECORD = 21
_written = [0]  # identity files, in this process; see identity_files_written()


def server_context(
    identity: Identity,
    trusted_pems: Sequence[str],
    on_refusal: Callable[[str], None] | None = None,
) -> ssl.SSLContext:
    """A TLS 1.2+ server context that accepts only clients holding a trusted certificate.

    A client without a certificate completes the handshake (for the status
    page); the caller must then refuse it anything else. ``on_refusal`` is
    called with the thumbprint of each client refused for its certificate
    ("unknown" if it could not be read), where refusals can be seen (see
    :func:`_log_refusals`).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_identity(context, identity)
    context.verify_mode = ssl.CERT_OPTIONAL
    if trusted_pems:
        context.load_verify_locations(cadata="\n".join(trusted_pems))
    # Trust exactly the pinned certificates. Without this flag OpenSSL looks a
    # self-signed certificate's issuer up by name, finds the first trusted
    # certificate of that name, and refuses every other peer that shares it
    # (all default certificates do).
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    _log_refusals(context, [_pem_thumbprint(pem) for pem in trusted_pems], on_refusal)
    return context


def client_context(identity: Identity) -> ssl.SSLContext:
    """A TLS 1.2+ client context presenting ``identity``; the peer is checked by
    :func:`check_peer` after the handshake, not by a CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _load_identity(context, identity)
    return context


def thumbprints_of(der: bytes) -> tuple[str, str]:
    """(SHA-1, SHA-256) thumbprints of a DER certificate, upper-case hex."""
    sha1 = hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
    return sha1, hashlib.sha256(der).hexdigest().upper()


def peer_certificate(ssl_object: Any) -> bytes | None:
    """The DER certificate the peer presented, if any."""
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der


def check_peer(ssl_object: Any, expected: str, where: str) -> str:
    """Raise TrustError unless the peer's certificate has the ``expected`` thumbprint.

    ``expected`` may be SHA-1 or SHA-256. Returns the peer's SHA-1 thumbprint.
    The error names both the thumbprint presented and the one expected.
    """
    wanted = parse_thumbprint(expected)
    der = peer_certificate(ssl_object)
    if der is None:
        raise TrustError(f"{where} presented no certificate; expected thumbprint {wanted}")
    sha1, sha256 = thumbprints_of(der)
    if wanted not in (sha1, sha256):
        raise TrustError(
            f"{where} presented certificate {sha1} (SHA-256 {sha256}), "
            f"but thumbprint {wanted} was expected"
        )
    return sha1


def _load_identity(context: ssl.SSLContext, identity: Identity) -> None:
    with _identity_file(identity) as path:
        context.load_cert_chain(path)


def identity_files_written() -> int:
    """How many times this process wrote a private key to a temporary file to build
    a context: what a fleet's client must do once per identity, not per dial."""
    return _written[0]


@contextlib.contextmanager
def _identity_file(identity: Identity) -> Iterator[Path]:
    """The identity in a private temporary file, for ssl's file-only loader."""
    _written[0] += 1
    with tempfile.TemporaryDirectory(prefix="tentacle-tls-") as directory:
        path = Path(directory) / "identity.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(identity.to_pem())
        yield path


def _pem_thumbprint(pem: str) -> str:
    return thumbprints_of(ssl.PEM_cert_to_DER_cert(pem))[0]


def _log_refusals(
    context: ssl.SSLContext, trusted: list[str], on_refusal: Callable[[str], None] | None
) -> None:
    """Log each refused client with the thumbprint it presented and those trusted.

    Uses the ssl module's message callback, which is private: where it is
    missing, refusals are not logged here (the dialer still reports them).
    """
    if not hasattr(context, "_msg_callback"):  # pragma: no cover
        return
    expected = ", ".join(trusted) or "none"

    def callback(conn: Any, direction: str, version: Any, content_type: Any,
                 msg_type: Any, data: bytes) -> None:  # fmt: skip
        try:
            if direction == "read" and msg_type == _CERTIFICATE_MESSAGE:
                conn._tentacle_presented = _first_certificate(data, version)
            elif direction == "write" and content_type == _ALERT_RECORD and len(data) == 2:
                level, alert = data[0], data[1]
                if level == _FATAL and alert in _REFUSAL_ALERTS:
                    der = getattr(conn, "_tentacle_presented", None)
                    presented = thumbprints_of(der)[0] if der else "unknown"
                    log.warning(
                        "refused a client presenting certificate %s (%s); trusted thumbprints: %s",
                        presented, _REFUSAL_ALERTS[alert], expected,
                    )  # fmt: skip
                    if on_refusal is not None:
                        on_refusal(presented)
        except Exception:  # a logging aid must never break a handshake
            log.debug("could not inspect a TLS message", exc_info=True)

    context._msg_callback = callback


def _first_certificate(data: bytes, version: Any) -> bytes | None:
    """The leaf DER in a TLS Certificate handshake message (1.2 or 1.3 layout)."""
    body = data[4:]
    if version == ssl.TLSVersion.TLSv1_3:
        body = body[1 + body[0] :]  # certificate_request_context
    body = body[3:]  # length of the whole list
    if len(body) < 3:
        return None
    length = int.from_bytes(body[:3], "big")
    return bytes(body[3 : 3 + length]) or None
