"""Every size the protocol accepts has a limit; each side announces its own in hello."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from agent.errors import ProtocolError

KIB = 1024
MIB = 1024 * KIB

# The smallest value of each limit that still lets a connection work: a hello,
# a call and its answer must fit a message, a message and a one-byte chunk a
# frame, and a call's params must be able to hold an object (depth 2 counts the
# message itself as 1). Anything smaller, or 0, is refused when announced.
MIN_MESSAGE_BYTES = 512
MINIMUMS = {
    "max_frame_bytes": MIN_MESSAGE_BYTES + 1,
    "max_message_bytes": MIN_MESSAGE_BYTES,
    "max_params_depth": 2,
    "max_chunk_bytes": 1,
    "max_calls_in_flight": 1,
    "max_streams_in_flight": 1,
    "stream_window_bytes": 1,
}
DATA_HEADER_BYTES = 5  # a D frame's tag and stream id


@dataclass(frozen=True)
class Limits:
    """What this side accepts from its peer.

    A frame or message over its limit, a stream over its window, or params
    nested too deeply break the connection (or the call) with an error that
    names the limit.
    """

    max_frame_bytes: int = 4 * MIB + 16
    max_message_bytes: int = 4 * MIB
    max_params_depth: int = 32
    max_chunk_bytes: int = 128 * KIB
    max_calls_in_flight: int = 256
    max_streams_in_flight: int = 64
    stream_window_bytes: int = 4 * MIB

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def largest_chunk(self) -> int:
        """The largest chunk a sender may put in one frame to this side."""
        return min(self.max_chunk_bytes, self.max_frame_bytes - DATA_HEADER_BYTES)

    @classmethod
    def from_dict(cls, values: dict[str, int]) -> Limits:
        """The peer's limits, as announced in its hello.

        Missing names take this implementation's defaults (the documented
        ones); unknown names are ignored, so that a later version may announce
        more. Raises ProtocolError, naming the limit, for a value below its
        minimum (0 included), which no connection could work with.
        """
        known = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in values.items() if k in known}
        for name, value in chosen.items():
            if value < MINIMUMS[name]:
                raise ProtocolError(
                    f"the peer announced {name}={value}; it must be at least {MINIMUMS[name]}",
                    limit=name,
                )
        return cls(**chosen)
