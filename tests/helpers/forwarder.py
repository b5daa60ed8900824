"""A TCP forwarder on loopback that breaks its connections on cue, like a bad network.

Armed with ``cut`` or ``freeze``, it waits for the agent's next bytes (the
answer to the call just made): ``cut`` then resets every connection it
carries, ``freeze`` stops moving bytes on them without closing anything, so
that only heartbeats can tell. Connections made afterwards work normally.

With ``reset_after_handshake(n)`` it instead resets each of the next ``n``
connections right after their TLS handshake, before the upgrade is answered,
as a server that refuses the client's certificate after a TLS 1.3 handshake does.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal["cut", "freeze"]


@dataclass
class _Link:
    """One forwarded connection: the dialer's side and the target's side."""

    dialer: asyncio.StreamWriter
    target: asyncio.StreamWriter
    frozen: asyncio.Event = field(default_factory=asyncio.Event)
    reset_after_handshake: bool = False
    last_sender: str = ""
    dialer_turns: int = 0  # times the dialer began to send after the target had


class Forwarder:
    def __init__(self, target_port: int, *, agent_dials: bool) -> None:
        """``agent_dials``: the agent is the side that connects (polling), not the target."""
        self.target_port = target_port
        self.agent_dials = agent_dials
        self.faults = 0
        self.fired = asyncio.Event()
        self._armed: Fault | None = None
        self._cut_budget: int | None = None  # bytes toward the agent before a cut
        self._resets_due = 0
        self.resets = 0
        self._links: list[_Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            _abort(link)
        for task in list(self._tasks):
            task.cancel()

    def arm(self, fault: Fault) -> None:
        """Break the connections when the agent next sends anything."""
        self._armed = fault

    def cut_after(self, toward_agent: int) -> None:
        """Cut every connection once ``toward_agent`` more bytes went to the agent: in
        the middle of an upload, counted in bytes rather than time."""
        self._cut_budget = toward_agent

    def reset_after_handshake(self, connections: int) -> None:
        """Reset the next ``connections`` connections right after their TLS handshake."""
        self._resets_due = connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, target_writer, reset_after_handshake=self._resets_due > 0)
        self._resets_due = max(0, self._resets_due - 1)
        self._links.append(link)
        pumps = [
            asyncio.ensure_future(self._pump(link, reader, target_writer, self.agent_dials)),
            asyncio.ensure_future(self._pump(link, target_reader, writer, not self.agent_dials)),
        ]
        self._tasks.update(pumps)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pumps, return_exceptions=True)
        self._tasks.difference_update(pumps)
        _abort(link)
        self._links.remove(link)

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        from_agent: bool,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if self._handshake_done(link, sink is link.target):
                    self.resets += 1
                    _abort(link)  # and these bytes never arrive
                    break
                if from_agent and self._armed is not None:
                    self._fire(self._armed)  # and these bytes never arrive
                if not from_agent and self._cut_budget is not None:
                    self._cut_budget -= len(data)
                    if self._cut_budget <= 0:
                        self._cut_budget = None
                        self._fire("cut")  # and these bytes never arrive
                        break
                if link.frozen.is_set() or link.dialer.transport.is_closing():
                    break
                sink.write(data)
                await sink.drain()
        if link.frozen.is_set():
            await asyncio.Event().wait()  # a frozen path moves nothing, not even a close
        sink.close()

    @staticmethod
    def _handshake_done(link: _Link, from_dialer: bool) -> bool:
        """Whether a link to reset after the handshake has just completed it.

        The dialer speaks twice in a TLS 1.3 handshake (ClientHello, then its
        certificate and Finished); the target's next bytes (session tickets, the
        HTTP answer) come only after it has read the dialer's Finished.
        """
        sender = "dialer" if from_dialer else "target"
        if sender == "dialer" and link.last_sender != "dialer":
            link.dialer_turns += 1
        link.last_sender = sender
        return link.reset_after_handshake and sender == "target" and link.dialer_turns >= 2

    def _fire(self, fault: Fault) -> None:
        self._armed = None
        self.faults += 1
        self.fired.set()
        for link in self._links:
            if fault == "cut":
                _abort(link)
            else:
                link.frozen.set()


def _abort(link: _Link) -> None:
    """Reset both sides, as a dropped route does (no orderly close)."""
    link.dialer.transport.abort()
    link.target.transport.abort()
