"""TLS for a server holding thousands of mostly idle connections: one read buffer for all.

asyncio's TLS (``asyncio.sslproto.SSLProtocol``, memory BIOs over a plain
socket transport) gives every connection a read buffer of its own of
``SSLProtocol.max_size`` (256 KiB), allocated and zero-filled when the
connection is accepted: 10,000 idle polling connections held 2.5 GiB of
buffers that only ever carry a ping. Yet the buffer holds bytes only for an
instant: the socket transport asks the protocol for it (``get_buffer``), reads
into it and hands the count back (``buffer_updated``) in one synchronous step,
and ``buffer_updated`` copies the bytes into the connection's incoming BIO
before anything else runs. So :class:`SharedBufferTLS` gives every connection
of one server the same buffer: reads stay as large as before (no more
syscalls for bulk data), and an idle connection costs none of it.

This is a subclass used by our own server only (:class:`TLSSite`), not a
change to the standard library's class: clients, and any other server in the
process, keep asyncio's own TLS. It relies on ``SSLProtocol``'s read buffer
attributes (``_ssl_buffer``, ``_ssl_buffer_view``, the same from Python 3.11
to 3.13); where :func:`shared_buffer_supported` finds a Python whose class no
longer reads into them, the site says so in a warning and serves with asyncio's
own TLS (a buffer per connection, as before): an agent must never fail to
listen for the sake of memory.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import socket
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# seconds, as asyncio's own TLS servers (asyncio.constants)
HANDSHAKE_TIMEOUT = 60
SHUTDOWN_TIMEOUT = 30


class SharedBuffer:
    """One read buffer, for every connection of one server (on one event loop)."""

    def __init__(self, size: int = sslproto.SSLProtocol.max_size) -> None:
        self.bytes = bytearray(size)
        self.view = memoryview(self.bytes)


class SharedBufferTLS(sslproto.SSLProtocol):
    """asyncio's server-side TLS protocol, reading into ``shared`` instead of a buffer
    of its own. Safe because every read is copied out of it before the next one
    (see the module's docstring); ``shared`` must not be used from two threads."""

    # What the base class's __init__ allocates as the buffer it is about to lose:
    # almost nothing, rather than 256 KiB zero-filled per connection (which left
    # the heap fragmented, ~24 KiB a connection of freed pages never returned).
    max_size = 16

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        shared: SharedBuffer,
    ) -> None:
        super().__init__(
            loop, app_protocol, context,
            None,  # type: ignore[arg-type]  # no waiter: nobody awaits the handshake (as a server)
            server_side=True,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT, ssl_shutdown_timeout=SHUTDOWN_TIMEOUT,
        )  # fmt: skip
        # the buffer the base class just made is dropped at once: what an idle
        # connection keeps is its BIOs and OpenSSL's state, not 256 KiB
        self._ssl_buffer = shared.bytes
        self._ssl_buffer_view = shared.view
        # each read as large as asyncio's own (an instance attribute over the class one)
        setattr(self, "max_size", len(shared.bytes))  # noqa: B010 - typeshed says ClassVar

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        super()._on_handshake_complete(handshake_exc)
        # the peer's certificate decoded as a dict (~1.4 KiB a connection), which
        # nobody asks for: the listener reads the DER from the ssl object
        self._extra.pop("peercert", None)


def shared_buffer_supported() -> bool:
    """Whether asyncio's SSLProtocol still reads into ``_ssl_buffer`` (a Python
    release may change it: sharing would then silently not happen)."""
    probe = SharedBuffer(16)
    try:
        protocol = SharedBufferTLS(
            asyncio.get_running_loop(), asyncio.Protocol(),
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), probe,
        )  # fmt: skip
        return protocol.get_buffer(8).obj is probe.bytes
    except Exception:  # any change to the private class: not supported
        return False


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:  # pragma: no cover
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


class HeapTrimmer:
    """Hands the heap's free pages back to the OS some time after connections came.

    Each TLS handshake allocates and frees tens of KiB inside OpenSSL between
    the allocations its connection keeps, and glibc returns to the OS only the
    free memory at the top of its heap: after 2,000 agents connected, ~11 KiB a
    connection of free pages stayed in the listener's RSS (80 KiB -> 69 KiB
    per connection once trimmed). So, when connections were accepted since the
    last time, every ``every`` seconds it calls ``malloc_trim`` (on the loop's
    thread: milliseconds for a heap of GiBs). Where the C library has no
    ``malloc_trim`` it does nothing.
    """

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.trims = 0  # done so far
        self._accepted = 0  # since the last trim
        self._trim = _malloc_trim()

    def accepted(self) -> None:
        """Count one accepted connection."""
        self._accepted += 1

    async def run(self) -> None:
        """Trim after accepts, every ``every`` seconds, until cancelled."""
        if self._trim is None:  # pragma: no cover
            return
        while True:
            await asyncio.sleep(self.every)  # a period, not synchronisation
            if self._accepted:
                self._accepted = 0
                started = time.monotonic()
                self._trim(0)
                self.trims += 1
                log.debug("heap trimmed in %.1f ms", (time.monotonic() - started) * 1e3)


class TLSSite(web.BaseSite):
    """An aiohttp site serving TLS through :class:`SharedBufferTLS`: on ``sock`` if
    given, else on ``host`` and ``port`` (as ``web.TCPSite``, address reused).

    The whole site's connections share one read buffer; a site is used from
    its event loop's thread only.
    """

    __slots__ = ("_host", "_port", "_shared", "_sock", "_tls", "_trimmer")

    def __init__(
        self,
        runner: web.BaseRunner,
        context: ssl.SSLContext,
        *,
        host: str | None = None,
        port: int = 0,
        sock: socket.socket | None = None,
        backlog: int = 128,
        trimmer: HeapTrimmer | None = None,
    ) -> None:
        """``trimmer`` is told of each accepted connection."""
        # no ssl_context for the base: TLS is this site's own protocol, not the loop's
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._sock = host, port, sock
        self._tls = context
        self._shared = SharedBuffer()
        self._trimmer = trimmer

    @property
    def name(self) -> str:
        if self._sock is not None:
            host, port = self._sock.getsockname()[:2]
            return f"https://{host}:{port}"
        return f"https://{self._host or '0.0.0.0'}:{self._port}"  # noqa: S104 - a name only

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # the runner is set up before its sites start
        if shared_buffer_supported():
            self._server = await self._create_server(self._protocol_factory(server))
            return
        log.warning(
            "this Python's asyncio TLS no longer reads into _ssl_buffer: serving with a "
            "read buffer per connection (%d KiB each)",
            sslproto.SSLProtocol.max_size // 1024,
        )
        self._server = await self._create_server(server, tls=self._tls)

    def _protocol_factory(self, app: Callable[[], Any]) -> Callable[[], asyncio.BaseProtocol]:
        loop = asyncio.get_running_loop()

        def accept() -> asyncio.BaseProtocol:
            if self._trimmer is not None:
                self._trimmer.accepted()
            return SharedBufferTLS(loop, app(), self._tls, self._shared)

        return accept

    async def _create_server(
        self, factory: Callable[[], asyncio.BaseProtocol], tls: ssl.SSLContext | None = None
    ) -> Any:
        """``tls``: the loop's own TLS around ``factory``'s protocols (the fallback)."""
        loop = asyncio.get_running_loop()
        timeouts: dict[str, Any] = (
            {"ssl_handshake_timeout": HANDSHAKE_TIMEOUT, "ssl_shutdown_timeout": SHUTDOWN_TIMEOUT}
            if tls is not None
            else {}
        )
        if self._sock is not None:
            return await loop.create_server(
                factory, sock=self._sock, backlog=self._backlog, ssl=tls, **timeouts
            )
        return await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=True,
            ssl=tls, **timeouts,
        )  # fmt: skip
