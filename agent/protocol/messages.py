"""The protocol's control messages: typed, strictly validated, JSON on the wire.

Each message is a JSON object whose ``t`` names its type. Decoding checks every
field's presence and type and raises ProtocolError naming what was wrong; it
never raises anything else, whatever the input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ProtocolError

PROTOCOL_NAME = "tentacle-rpc"

# Error kinds a call can fail with (docs/protocol.md).
UNKNOWN_SERVICE = "unknown_service"
UNKNOWN_METHOD = "unknown_method"
BAD_PARAMS = "bad_params"
LIMIT_EXCEEDED = "limit_exceeded"
INTERNAL = "internal"
CANCELLED = "cancelled"
NOT_FOUND = "not_found"
REFUSED = "refused"
DRAINING = "draining"  # scripts.start of a new ticket while the agent drains
UNSUPPORTED_VERSION = "unsupported_version"
PROTOCOL_ERROR = "protocol_error"  # id 0: the peer broke a rule; the connection ends


@dataclass(frozen=True)
class Hello:
    versions: tuple[int, ...]
    name: str
    version: str
    services: tuple[str, ...]
    limits: dict[str, int]
    protocol: str = PROTOCOL_NAME


@dataclass(frozen=True)
class Call:
    id: int
    service: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    stream: int | None = None


@dataclass(frozen=True)
class Result:
    id: int
    value: Any = None
    stream: int | None = None


@dataclass(frozen=True)
class Error:
    id: int
    kind: str
    message: str


@dataclass(frozen=True)
class Cancel:
    id: int


@dataclass(frozen=True)
class End:
    """The end of a stream; with ``error`` it was abandoned and its data is void."""

    stream: int
    error: str | None = None


@dataclass(frozen=True)
class Window:
    """Flow-control credit: the sender of ``stream`` may send ``increment`` more bytes."""

    stream: int
    increment: int


@dataclass(frozen=True)
class Ping:
    nonce: int


@dataclass(frozen=True)
class Pong:
    nonce: int


Message = Hello | Call | Result | Error | Cancel | End | Window | Ping | Pong

_TYPES: dict[str, type[Message]] = {
    "hello": Hello,
    "call": Call,
    "result": Result,
    "error": Error,
    "cancel": Cancel,
    "end": End,
    "window": Window,
    "ping": Ping,
    "pong": Pong,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}

# Field -> (JSON type check, required). Ints exclude bools; ids and sizes are >= 0.
_ANY = object()
_SCHEMA: dict[type[Message], dict[str, tuple[Any, bool]]] = {
    Hello: {
        "versions": ("int_list", True),
        "name": (str, True),
        "version": (str, True),
        "services": ("str_list", True),
        "limits": ("int_map", True),
        "protocol": (str, True),
    },
    Call: {
        "id": (int, True),
        "service": (str, True),
        "method": (str, True),
        "params": (dict, False),
        "stream": (int, False),
    },
    Result: {"id": (int, True), "value": (_ANY, False), "stream": (int, False)},
    Error: {"id": (int, True), "kind": (str, True), "message": (str, True)},
    Cancel: {"id": (int, True)},
    End: {"stream": (int, True), "error": (str, False)},
    Window: {"stream": (int, True), "increment": (int, True)},
    Ping: {"nonce": (int, True)},
    Pong: {"nonce": (int, True)},
}


def encode_message(message: Message) -> bytes:
    """JSON bytes for ``message``; optional fields that are None are left out."""
    body: dict[str, Any] = {"t": _NAMES[type(message)]}
    for name in _SCHEMA[type(message)]:
        value = getattr(message, name)
        if value is not None:
            body[name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_message(data: bytes, max_depth: int) -> Message:
    """Parse and validate one message. Raises ProtocolError, and nothing else."""
    try:
        body = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise _too_deep(max_depth) from None
    except (UnicodeDecodeError, ValueError) as error:
        raise ProtocolError(f"message is not UTF-8 JSON: {error}") from None
    if _nesting_depth(body) > max_depth:
        raise _too_deep(max_depth)
    if not isinstance(body, dict) or body.get("t") not in _TYPES:
        kind = body.get("t") if isinstance(body, dict) else type(body).__name__
        raise ProtocolError(f"unknown message type {kind!r}; expected one of {sorted(_TYPES)}")
    cls = _TYPES[body.pop("t")]
    return cls(**_validated(cls, body))


def _validated(cls: type[Message], body: dict[str, Any]) -> dict[str, Any]:
    schema = _SCHEMA[cls]
    unknown = set(body) - set(schema)
    if unknown:
        raise ProtocolError(f"{_NAMES[cls]} message has unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, (expected, required) in schema.items():
        if name not in body or body[name] is None:
            if required:
                raise ProtocolError(f"{_NAMES[cls]} message lacks the field {name!r}")
            continue
        values[name] = _checked(cls, name, body[name], expected)
    return values


def _checked(cls: type[Message], name: str, value: Any, expected: Any) -> Any:
    ok: bool
    if expected is _ANY:
        return value
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
    elif expected == "int_list":
        ok = isinstance(value, list) and all(_is_count(v) for v in value)
        value = tuple(value) if ok else value
    elif expected == "str_list":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif expected == "int_map":
        ok = isinstance(value, dict) and all(_is_count(v) for v in value.values())
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ProtocolError(f"{_NAMES[cls]} message field {name!r} has a bad value {value!r:.80}")
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _too_deep(max_depth: int) -> ProtocolError:
    return ProtocolError(
        f"message nested deeper than max_params_depth={max_depth}", limit="max_params_depth"
    )


def _nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in a decoded JSON value (iteratively)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in item)
    return deepest
