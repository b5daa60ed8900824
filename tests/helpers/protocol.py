"""Two sans-I/O Connections wired back to back in memory, like h11's ConnectionPair."""

from __future__ import annotations

from agent.protocol import Connection, Hello, Limits
from agent.protocol import events as ev


def hello(name: str, versions: tuple[int, ...] = (1,)) -> Hello:
    return Hello(versions=versions, name=name, version="test", services=(), limits={})


class ConnectionPair:
    """``dialer`` and ``acceptor``; ``deliver`` moves queued frames across."""

    def __init__(
        self,
        *,
        dialer_limits: Limits | None = None,
        acceptor_limits: Limits | None = None,
        heartbeat: float = 10.0,
    ) -> None:
        self.now = 0.0
        self.dialer = Connection(
            hello("dialer"), dialer=True, now=0.0, heartbeat_interval=heartbeat,
            limits=dialer_limits,
        )  # fmt: skip
        self.acceptor = Connection(
            hello("acceptor"), dialer=False, now=0.0, heartbeat_interval=heartbeat,
            limits=acceptor_limits,
        )  # fmt: skip

    def deliver(self, source: Connection) -> list[ev.Event]:
        """Send everything ``source`` has queued to its peer; return the peer's events."""
        target = self.acceptor if source is self.dialer else self.dialer
        events: list[ev.Event] = []
        for frame in source.frames_to_send():
            events.extend(target.receive_frame(frame, self.now))
        return events

    def handshake(self) -> None:
        assert isinstance(self.deliver(self.dialer)[0], ev.HelloReceived)
        assert isinstance(self.deliver(self.acceptor)[0], ev.HelloReceived)
