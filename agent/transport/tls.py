"""TLS contexts with pinned certificates, both ways (see docs/architecture.md).

Python's ssl module has no verify callback, so the two sides pin differently:

* the side that *accepts* TLS loads the trusted peers' own certificates as its
  only trust anchors (a self-signed leaf anchors itself) and asks for a client
  certificate, optionally, so that a browser without one still gets a page;
* the side that *dials* accepts whatever the handshake brings and checks the
  peer certificate's thumbprint before it sends a single byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.certs import Identity, certificate_pem, load_certificate, parse_thumbprint
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
    trusted = [_pem_thumbprint(pem) for pem in trusted_pems]
    context = _trusting_nobody_yet(identity, lambda: trusted, on_refusal)
    if trusted_pems:
        context.load_verify_locations(cadata="\n".join(trusted_pems))
    return context


def _trusting_nobody_yet(
    identity: Identity,
    trusted: Callable[[], Sequence[str]],
    on_refusal: Callable[[str], None] | None,
) -> ssl.SSLContext:
    """A server context as :func:`server_context` makes, before any certificate is
    loaded; ``trusted()`` gives the thumbprints that refusals are logged with."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_identity(context, identity)
    context.verify_mode = ssl.CERT_OPTIONAL
    # Trust exactly the pinned certificates. Without this flag OpenSSL looks a
    # self-signed certificate's issuer up by name, finds the first trusted
    # certificate of that name, and refuses every other peer that shares it
    # (all default certificates do).
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    _log_refusals(context, trusted, on_refusal)
    return context


class LiveTrust:
    """The client certificates a TLS server trusts, changeable while it serves.

    :attr:`context` is the server's context. Its SNI callback, which OpenSSL
    calls for every ClientHello (with or without a server name), installs on
    each handshake the current context, which holds the certificates trusted.
    OpenSSL can add a certificate to a context's store but not remove one, and
    loading n certificates into a store costs O(n^2) (seconds for 10,000), so:

    * :meth:`add` adds to the current context: effective from the next handshake;
    * :meth:`remove` makes the current context *stale* (it still lets the removed
      certificate through the handshake) until :meth:`rebuild` has built a new one
      off the event loop. Until then the server must refuse the removed
      certificate after the handshake, by :meth:`trusted`; removals are rare.

    Connections already open are the caller's to close. Use it from the event
    loop's thread (only :meth:`rebuild` uses another, for the build).
    """

    def __init__(
        self,
        identity: Identity,
        trusted_pems: Sequence[str] = (),
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        """``on_refusal`` as for :func:`server_context`. The first handshake (or
        :meth:`rebuild`, which does it off the loop) builds the current context."""
        self._identity = identity
        self._on_refusal = on_refusal
        self._pems: dict[str, str] = {}  # SHA-1 thumbprint -> PEM, trusted now
        self._sha1_of: dict[str, str] = {}  # SHA-256 thumbprint -> SHA-1
        self._current: ssl.SSLContext | None = None
        self._loaded: set[str] = set()  # what _current trusts: more than _pems when stale
        self.builds = 0  # contexts built so far
        self._rebuilding = asyncio.Lock()
        for pem in trusted_pems:
            self.add(pem)
        # Trusts no one by itself, so that a handshake the callback missed fails closed.
        self.context = _trusting_nobody_yet(identity, self.thumbprints, on_refusal)
        self.context.sni_callback = self._install_current

    def add(self, pem: str) -> str:
        """Trust the certificate ``pem`` from the next handshake on; returns its SHA-1
        thumbprint. Raises CertificateError, naming what was expected, if ``pem`` is
        not a PEM certificate. Adding a trusted certificate again changes nothing."""
        sha1, sha256, normal = _parsed(pem)
        self._pems[sha1], self._sha1_of[sha256] = normal, sha1
        if self._current is not None and sha1 not in self._loaded:
            # Safe while handshakes use it: each verification looks the store up
            # afresh, and on this thread nothing verifies while this runs.
            self._current.load_verify_locations(cadata=normal)
            self._loaded.add(sha1)
        return sha1

    def replace(self, pems: Sequence[str]) -> set[str]:
        """Trust exactly ``pems``; returns the SHA-1 thumbprints no longer trusted.
        Raises CertificateError, changing nothing, if one is not a PEM certificate."""
        parsed = [_parsed(pem) for pem in pems]
        kept = {sha1 for sha1, _, _ in parsed}
        removed = {sha1 for sha1 in self._pems if sha1 not in kept}
        for sha1 in removed:
            self.remove(sha1)
        for _, _, normal in parsed:
            self.add(normal)
        return removed

    def remove(self, thumbprint: str) -> str | None:
        """Stop trusting the certificate with ``thumbprint`` (SHA-1 or SHA-256): at once
        for :meth:`trusted`, in the handshake once :meth:`rebuild` has run. Returns its
        SHA-1 thumbprint, or None if it was not trusted. Raises CertificateError for a
        malformed thumbprint."""
        sha1 = self.trusted(thumbprint)
        if sha1 is None:
            return None
        pem = self._pems.pop(sha1)
        del self._sha1_of[thumbprints_of(ssl.PEM_cert_to_DER_cert(pem))[1]]
        return sha1

    def trusted(self, thumbprint: str) -> str | None:
        """The SHA-1 thumbprint of the trusted certificate with ``thumbprint`` (SHA-1 or
        SHA-256), or None if it is not trusted now."""
        wanted = parse_thumbprint(thumbprint)
        sha1 = self._sha1_of.get(wanted, wanted)
        return sha1 if sha1 in self._pems else None

    def thumbprints(self) -> list[str]:
        """The SHA-1 thumbprints trusted now, sorted."""
        return sorted(self._pems)

    @property
    def stale(self) -> bool:
        """Whether the current context lets a removed certificate through the handshake."""
        return not self._loaded <= self._pems.keys()

    async def rebuild(self) -> None:
        """Build a context of the certificates trusted now in a thread (the loop goes
        on serving with the current one), then install it, with what was added
        meanwhile. Leaves it stale only if something was removed meanwhile."""
        async with self._rebuilding:  # one at a time: an older one must not finish last
            pems = dict(self._pems)
            fresh = await asyncio.to_thread(self._build, list(pems.values()))
            added = {sha1: pem for sha1, pem in self._pems.items() if sha1 not in pems}
            if added:
                fresh.load_verify_locations(cadata="\n".join(added.values()))
            self._current, self._loaded = fresh, pems.keys() | added.keys()

    def _build(self, pems: list[str]) -> ssl.SSLContext:
        context = _trusting_nobody_yet(self._identity, self.thumbprints, self._on_refusal)
        if pems:
            # from a file: ssl loads one without holding the GIL, unlike cadata
            with tempfile.TemporaryDirectory(prefix="tentacle-trust-") as directory:
                path = Path(directory) / "trusted.pem"
                path.write_text("\n".join(pems), encoding="ascii")
                context.load_verify_locations(cafile=path)
        self.builds += 1
        return context

    def _install_current(self, ssl_object: Any, server_name: str | None, _: Any) -> int | None:
        # Called inside the handshake: an exception here would be swallowed by
        # OpenSSL with a vague alert, so log it and refuse with an explicit one.
        try:
            if self._current is None:  # no rebuild() yet: build here, blocking the loop
                self._current, self._loaded = (
                    self._build(list(self._pems.values())),
                    set(self._pems),
                )
            ssl_object.context = self._current
        except Exception:
            log.exception("could not build the TLS context of the trusted certificates")
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None


def _parsed(pem: str) -> tuple[str, str, str]:
    """(SHA-1, SHA-256, normalised PEM) of one PEM certificate; CertificateError if it is not."""
    certificate = load_certificate(pem.encode("utf-8", "replace"), "the certificate to trust")
    normal = certificate_pem(certificate)
    sha1, sha256 = thumbprints_of(ssl.PEM_cert_to_DER_cert(normal))
    return sha1, sha256, normal


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
    context: ssl.SSLContext,
    trusted: Callable[[], Sequence[str]],
    on_refusal: Callable[[str], None] | None,
) -> None:
    """Log each refused client with the thumbprint it presented and those trusted
    (``trusted()`` when it is refused).

    Uses the ssl module's message callback, which is private: where it is
    missing, refusals are not logged here (the dialer still reports them).
    """
    if not hasattr(context, "_msg_callback"):  # pragma: no cover
        return

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
                    expected = _listed(trusted())
                    log.warning(
                        "refused a client presenting certificate %s (%s); trusted thumbprints: %s",
                        presented, _REFUSAL_ALERTS[alert], expected,
                    )  # fmt: skip
                    if on_refusal is not None:
                        on_refusal(presented)
        except Exception:  # a logging aid must never break a handshake
            log.debug("could not inspect a TLS message", exc_info=True)

    _set_message_callback(context, callback)


def _set_message_callback(context: ssl.SSLContext, callback: Callable[..., None]) -> None:
    """Install ``callback`` for every TLS message, given the plain integers OpenSSL gives.

    ssl's own setter wraps it in a function that turns version, content type and
    message type into enums on every call, and the callback is called for every
    TLS record header too: ~1 us each, 40,000 times per 256 MiB sent or received.
    The C attribute beneath takes the callback as it is (the comparisons above
    are with integers either way). Where there is none, ssl's setter is used.
    """
    raw = getattr(ssl, "_SSLContext", None)
    descriptor = raw.__dict__.get("_msg_callback") if raw is not None else None
    if descriptor is not None and hasattr(descriptor, "__set__"):
        descriptor.__set__(context, callback)
    else:  # pragma: no cover - another ssl module
        setattr(context, "_msg_callback", callback)  # noqa: B010 - a private attribute


def _listed(thumbprints: Sequence[str], most: int = 5) -> str:
    """Thumbprints for a log line: a few, and how many more (a hub trusts thousands)."""
    shown = ", ".join(thumbprints[:most]) or "none"
    more = len(thumbprints) - most
    return f"{shown} and {more} more" if more > 0 else shown


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
