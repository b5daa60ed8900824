"""Every size the protocol accepts has a limit; each side announces its own in hello."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

KIB = 1024
MIB = 1024 * KIB


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

    @classmethod
    def from_dict(cls, values: dict[str, int]) -> Limits:
        """The peer's limits; unknown names are ignored, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
