"""The typed contract of the services (docs/protocol.md §8), shared by agent and client.

Every service method has a frozen request type and a frozen reply type. Each
field names its wire key and its kind once (``wire(...)``), so this module is
the only place the wire vocabulary (``"ScriptTicket"``, ``"LastLogSequence"``...)
is written; ``parse`` and ``to_wire`` are derived from it, and
tests/unit/protocol/test_contract.py checks docs/protocol.md §8 against it.

``parse`` is strict where the agent must be: a required field that is missing,
``null`` or of the wrong type raises CallError(bad_params) naming the field and
what was expected; an optional field that is ``null`` or ``""`` takes its
default. Unknown keys are ignored (docs/protocol.md §8). ``to_wire`` leaves out
optional fields that are None, so a caller never sends ``null`` for "not given".

Sans-I/O: no asyncio, no files; imports only agent.errors and the protocol package.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from agent.errors import CallError, ProtocolError
from agent.protocol.messages import BAD_PARAMS

T = TypeVar("T", bound="WireType")

# -- enums ----------------------------------------------------------------------


class State(enum.StrEnum):
    """A script's state; the allowed moves are ``TRANSITIONS``, written once."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"


TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.PENDING: frozenset({State.RUNNING, State.COMPLETE}),  # launched, or never launched
    State.RUNNING: frozenset({State.COMPLETE}),
    State.COMPLETE: frozenset(),  # an outcome is final
}


class TransitionError(ValueError):
    """A state change the life of a script does not allow (a bug in the agent)."""


def check_transition(current: State, new: State) -> State:
    """``new`` if a script in ``current`` may move to it; raises TransitionError otherwise."""
    if new not in TRANSITIONS[State(current)]:
        allowed = ", ".join(sorted(TRANSITIONS[State(current)])) or "nothing"
        raise TransitionError(f"a script cannot go from {current} to {new} (allowed: {allowed})")
    return State(new)


class Syntax(enum.StrEnum):
    BASH = "bash"
    SH = "sh"
    PYTHON = "python"


class Isolation(enum.StrEnum):
    FULL = "full"
    NONE = "none"


class ProcessTree(enum.StrEnum):
    """How a script's processes are kept together (and so killed on a cancel)."""

    CGROUP = "cgroup"  # a cgroup per script: every descendant, daemons included
    SESSION = "session"  # the wrapper's session: a setsid daemon escapes it


class ScriptIsolation(enum.StrEnum):
    """Capabilities' ScriptIsolation: whether scripts run as their isolation group's uid."""

    USERS = "users"
    NONE = "none"


class LogSource(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    DEBUG = "debug"


class ExitCode(enum.IntEnum):
    """Exit codes reserved for outcomes other than the script's own exit (Tentacle's values)."""

    FATAL = -41
    LAUNCH_FAILED = -42
    CANCELLED = -43
    TIMEOUT = -44
    UNKNOWN_SCRIPT = -45
    UNKNOWN_RESULT = -46
    OUT_OF_MEMORY = -47  # not Tentacle's: killed by the kernel at its cgroup's memory limit


EXIT_CODE_MEANINGS: Mapping[ExitCode, str] = {
    ExitCode.FATAL: "fatal error in the agent",
    ExitCode.LAUNCH_FAILED: "the script could not be launched",
    ExitCode.CANCELLED: "cancelled before it started",
    ExitCode.TIMEOUT: "timed out waiting for the isolation mutex",
    ExitCode.UNKNOWN_SCRIPT: "unknown script ticket",
    ExitCode.UNKNOWN_RESULT: "the script's result is unknown",
    ExitCode.OUT_OF_MEMORY: "killed for exceeding its memory limit",
}


def describe_exit_code(code: int) -> str:
    """A reserved code's meaning, or 'exit code N' for a script's own code."""
    try:
        return EXIT_CODE_MEANINGS[ExitCode(code)]
    except ValueError:
        return f"exit code {code}"


DEFAULT_MUTEX = "RunningScript"
DEFAULT_GRACE = 10.0

# -- kinds: what a field's value is on the wire ------------------------------------


class Kind:
    """How one field's value is checked (``load``) and written (``dump``).

    ``doc`` is how docs/protocol.md §8's tables write the kind; ``load`` raises
    CallError(bad_params) with a message naming ``name``.
    """

    doc = ""

    def load(self, value: Any, name: str, where: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value

    def bad(self, value: Any, name: str, where: str) -> CallError:
        return CallError(BAD_PARAMS, f"{where} needs {name!r} as {self.doc}, got {value!r:.60}")


class _Plain(Kind):
    def __init__(self, kind: type, doc: str) -> None:
        self.kind, self.doc = kind, doc

    def load(self, value: Any, name: str, where: str) -> Any:
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise self.bad(value, name, where)
        return value

    def dump(self, value: Any) -> Any:
        return self.kind(value)  # an IntEnum (ExitCode) goes out as a plain int


class _Count(_Plain):
    """A whole number >= 0; ``below_zero`` is the message for a negative one."""

    def __init__(self, below_zero: str) -> None:
        super().__init__(int, "int")
        self.below_zero = below_zero

    def load(self, value: Any, name: str, where: str) -> Any:
        number = super().load(value, name, where)
        if number < 0:
            raise CallError(BAD_PARAMS, self.below_zero.format(name=name, value=number))
        return number


class _Seconds(Kind):
    doc = "seconds"

    def load(self, value: Any, name: str, where: str) -> Any:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or not math.isfinite(value)
        ):
            raise CallError(BAD_PARAMS, f"{name} must be a number of seconds, not {value!r}")
        return float(value)


class _OneOf(Kind):
    def __init__(self, values: type[enum.StrEnum]) -> None:
        self.values = values
        self.doc = "one of " + ", ".join(values)

    def load(self, value: Any, name: str, where: str) -> Any:
        try:
            return self.values(value)
        except ValueError:
            names = list(self.values)
            expected = " or ".join(names) if len(names) == 2 else "one of " + ", ".join(names)
            raise CallError(BAD_PARAMS, f"{name} must be {expected}, not {value!r:.60}") from None

    def dump(self, value: Any) -> Any:
        return str(value)


class _Texts(Kind):
    doc = "[str]"

    def load(self, value: Any, name: str, where: str) -> Any:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise CallError(BAD_PARAMS, f"{name} must be a list of strings")
        return tuple(value)

    def dump(self, value: Any) -> Any:
        return list(value)


class _Records(Kind):
    """A list of one wire type; ``invalid`` replaces the message of any item's error."""

    def __init__(self, kind: type[WireType], invalid: str | None = None) -> None:
        self.kind, self.invalid = kind, invalid
        self.doc = f"[{kind.__name__}]"

    def load(self, value: Any, name: str, where: str) -> Any:
        if not isinstance(value, list):
            raise self.bad(value, name, where)
        try:
            return tuple(self.kind.parse(item, f"{where} {name}") for item in value)
        except CallError:
            if self.invalid is None:
                raise
            raise CallError(BAD_PARAMS, self.invalid) from None

    def dump(self, value: Any) -> Any:
        return [item.to_wire() for item in value]


class _Record(Kind):
    """One record of a wire type (an object inside the call)."""

    def __init__(self, kind: type[WireType]) -> None:
        self.kind = kind
        self.doc = kind.__name__

    def load(self, value: Any, name: str, where: str) -> Any:
        if not isinstance(value, dict):
            raise self.bad(value, name, where)
        return self.kind.parse(value, f"{where} {name}")

    def dump(self, value: Any) -> Any:
        return value.to_wire()


class _Positive(_Plain):
    """A whole number from ``low`` to ``high``."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__(int, "int")
        self.low, self.high = low, high

    def load(self, value: Any, name: str, where: str) -> Any:
        number = super().load(value, name, where)
        if not self.low <= number <= self.high:
            raise CallError(
                BAD_PARAMS,
                f"{where} needs {name!r} from {self.low} to {self.high}, got {number}",
            )
        return number


class _Nullable(Kind):
    """Present on the wire, but may be ``null`` (a status's ExitCode until Complete)."""

    def __init__(self, inner: Kind) -> None:
        self.inner = inner
        self.doc = f"{inner.doc} or null"

    def load(self, value: Any, name: str, where: str) -> Any:
        return None if value is None else self.inner.load(value, name, where)

    def dump(self, value: Any) -> Any:
        return None if value is None else self.inner.dump(value)


class _Environment(Kind):
    """Names to values for a script's process environment (``Environment``).

    Held as sorted ``(name, value)`` pairs (a frozen type keeps no dict). The
    messages name the variable and what was expected but never quote a value:
    a value may be a secret, and an error goes into answers and logs.
    """

    doc = "{str: str}"

    def load(self, value: Any, name: str, where: str) -> Any:
        if not isinstance(value, Mapping):
            raise CallError(BAD_PARAMS, f"{where} needs {name!r} as an object of names to strings")
        if len(value) > MAX_ENVIRONMENT_VARIABLES:
            raise CallError(
                BAD_PARAMS,
                f"{name} has {len(value)} variables; at most {MAX_ENVIRONMENT_VARIABLES} "
                "(MAX_ENVIRONMENT_VARIABLES) are taken",
            )
        size = 0
        for key, text in value.items():
            check_environment_entry(key, text, name)
            size += len(key.encode()) + len(text.encode()) + 2
        if size > MAX_ENVIRONMENT_BYTES:
            raise CallError(
                BAD_PARAMS,
                f"{name} is {size} bytes (names and values in UTF-8, with one '=' and one "
                f"NUL each); at most {MAX_ENVIRONMENT_BYTES} (MAX_ENVIRONMENT_BYTES) are taken",
            )
        return tuple(sorted(value.items()))

    def dump(self, value: Any) -> Any:
        return dict(value)


ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENVIRONMENT_VARIABLES = 256
MAX_ENVIRONMENT_BYTES = 64 * 1024
RESERVED_VARIABLES = frozenset(
    {
        "TentacleHome",
        "TentacleApplications",
        "TentacleInstanceName",
        "TentacleVersion",
        "TentacleExecutablePath",
        "TentacleJournal",
        "TentacleScriptTicket",
        "TentacleWorkspace",
    }
)
"""What the agent sets for every script (docs/protocol.md §8): an Environment naming one is
refused, rather than one side silently winning."""


def check_environment_entry(key: Any, value: Any, field: str = "Environment") -> None:
    """CallError(bad_params) naming ``key`` unless it is a variable a script may be given:
    a name ``[A-Za-z_][A-Za-z0-9_]*`` not in RESERVED_VARIABLES, a string value without NUL.
    The value is never quoted (it may be a secret)."""
    shown = f"{key!r:.80}"
    if not isinstance(key, str) or not ENVIRONMENT_NAME.fullmatch(key):
        raise CallError(
            BAD_PARAMS,
            f"{field}: {shown} is not a variable name; expected [A-Za-z_][A-Za-z0-9_]* "
            "(a letter or _, then letters, digits or _)",
        )
    if key in RESERVED_VARIABLES:
        raise CallError(
            BAD_PARAMS,
            f"{field}: {key} is set by the agent for every script and cannot be given "
            f"(reserved: {', '.join(sorted(RESERVED_VARIABLES))})",
        )
    if not isinstance(value, str):
        raise CallError(
            BAD_PARAMS, f"{field}: the value of {key} must be a string, not {type(value).__name__}"
        )
    if "\0" in value:
        raise CallError(
            BAD_PARAMS,
            f"{field}: the value of {key} contains a NUL character, which no process "
            "environment can hold",
        )


TEXT = _Plain(str, "str")
INT = _Plain(int, "int")
BOOL = _Plain(bool, "bool")
SECONDS = _Seconds()
TEXTS = _Texts()
ENVIRONMENT = _Environment()

# -- fields and the types built of them --------------------------------------------


@dataclass(frozen=True)
class WireField:
    name: str  # the wire key
    kind: Kind
    required: bool
    blank_is_default: bool = False  # "" means "not given" (as Tentacle treats these)
    default: Any = None

    @property
    def default_doc(self) -> str:
        """The default as docs/protocol.md §8 writes it: its JSON, or "-" (none)."""
        if self.required or self.default is None:
            return "-"
        return json.dumps(self.kind.dump(self.default))


def wire(
    name: str, kind: Kind, *, default: Any = dataclasses.MISSING, blank_is_default: bool = False
) -> Any:
    """A dataclass field sent as ``name``; required unless it has a default."""
    required = default is dataclasses.MISSING
    return dataclasses.field(
        default=default,
        metadata={"wire": WireField(name, kind, required, blank_is_default, default)},
    )


_FIELDS: dict[type, tuple[tuple[str, WireField], ...]] = {}


def wire_fields(kind: type[WireType] | WireType) -> tuple[tuple[str, WireField], ...]:
    """``(attribute, WireField)`` for each field of ``kind``, in order (cached: every
    call and status goes through here)."""
    cls = kind if isinstance(kind, type) else type(kind)
    found = _FIELDS.get(cls)
    if found is None:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        found = _FIELDS[cls] = tuple((f.name, f.metadata["wire"]) for f in fields)
    return found


class WireType:
    """A request or reply: ``parse`` from a wire dict, ``to_wire`` back to one.

    ``METHOD`` is ``service.method`` for the calls and their replies (None for
    the records inside them); ``REPLY`` says whether it is a reply.
    """

    METHOD: ClassVar[str | None] = None
    REPLY: ClassVar[bool] = False

    @classmethod
    def parse(cls: type[T], params: Any, where: str | None = None) -> T:
        """The value of ``params``; raises CallError(bad_params) naming what is wrong."""
        where = where or cls.METHOD or cls.__name__
        if params is None:
            params = {}
        if not isinstance(params, dict) and not isinstance(params, Mapping):
            raise CallError(BAD_PARAMS, f"{where} needs an object, got {params!r:.60}")
        values: dict[str, Any] = {}
        for attribute, field in wire_fields(cls):
            value = params.get(field.name)
            if not field.required and (value is None or (value == "" and field.blank_is_default)):
                continue  # the default
            values[attribute] = field.kind.load(value, field.name, where)
        return cls(**values)

    @classmethod
    def parse_reply(cls: type[T], value: Any) -> T:
        """As ``parse``, for a reply from a peer: what is wrong is the peer's fault."""
        try:
            return cls.parse(value, f"the reply to {cls.METHOD or cls.__name__}")
        except CallError as error:
            raise ProtocolError(f"unexpected reply: {error}") from None

    def checked(self: T) -> T:
        """This value as the peer would parse it: raises CallError(bad_params) naming
        a field whose value the contract does not allow (a Syntax it does not know)."""
        return type(self).parse(self.to_wire())

    def to_wire(self) -> dict[str, Any]:
        """The wire dict; optional fields that are None are left out."""
        result: dict[str, Any] = {}
        for attribute, field in wire_fields(self):
            value = getattr(self, attribute)
            if value is None and not field.required:
                continue
            result[field.name] = field.kind.dump(value)
        return result


# -- capabilities/1 ---------------------------------------------------------------


@dataclass(frozen=True)
class CapabilitiesRequest(WireType):
    METHOD = "capabilities.get"


@dataclass(frozen=True)
class Capabilities(WireType):
    METHOD = "capabilities.get"
    REPLY = True

    supported_capabilities: tuple[str, ...] = wire("SupportedCapabilities", TEXTS)
    agent_version: str = wire("AgentVersion", TEXT)
    os: str = wire("OS", TEXT)
    os_version: str = wire("OSVersion", TEXT)
    architecture: str = wire("Architecture", TEXT)
    shells: tuple[str, ...] = wire("Shells", TEXTS)
    free_disk_bytes: int = wire("FreeDiskBytes", INT)
    cpus: int = wire("Cpus", INT)
    memory_bytes: int = wire("MemoryBytes", INT)
    draining: bool = wire("Draining", BOOL, default=False)  # new scripts refused (drain)
    draining_since: str | None = wire("DrainingSince", TEXT, default=None)  # when it began
    process_tree: ProcessTree = wire(
        "ProcessTree", _OneOf(ProcessTree), default=ProcessTree.SESSION
    )
    script_isolation: ScriptIsolation = wire(
        "ScriptIsolation", _OneOf(ScriptIsolation), default=ScriptIsolation.NONE
    )


@dataclass(frozen=True)
class PingRequest(WireType):
    METHOD = "capabilities.ping"


@dataclass(frozen=True)
class Pong(WireType):
    METHOD = "capabilities.ping"
    REPLY = True

    pong: bool = wire("Pong", BOOL)


# -- files/1 ---------------------------------------------------------------------


@dataclass(frozen=True)
class UploadRequest(WireType):
    """The file's ``length`` bytes travel on the call's stream."""

    METHOD = "files.upload"

    path: str = wire("Path", TEXT)
    length: int = wire("Length", _Count("{name} must be 0 or more bytes, got {value}"))
    # A relative Path is then in that group's folder, the file its uid's (agent.scripts.users)
    isolation_group: str | None = wire("IsolationGroup", TEXT, default=None)


@dataclass(frozen=True)
class Uploaded(WireType):
    METHOD = "files.upload"
    REPLY = True

    full_path: str = wire("FullPath", TEXT)
    length: int = wire("Length", INT)
    sha256: str = wire("Sha256", TEXT)


@dataclass(frozen=True)
class DownloadRequest(WireType):
    METHOD = "files.download"

    path: str = wire("Path", TEXT)
    # The group whose script named the file (an artifact): served only if its uid owns it
    isolation_group: str | None = wire("IsolationGroup", TEXT, default=None)


@dataclass(frozen=True)
class Download(WireType):
    """The file's ``length`` bytes travel on the result's stream."""

    METHOD = "files.download"
    REPLY = True

    full_path: str = wire("FullPath", TEXT)
    length: int = wire("Length", INT)


# -- scripts/1 and scripts/2 ----------------------------------------------------

SCRIPTS_VERSION = 2  # scripts/2: scripts/1 and StartScriptRequest's Environment
ENVIRONMENT_SERVICE = f"scripts/{SCRIPTS_VERSION}"
"""What a peer lists (hello's ``services``, ``SupportedCapabilities``) when it takes a
start's Environment; one that does not would ignore the field (unknown keys are)."""

_SYNTAX, _ISOLATION, _STATE = _OneOf(Syntax), _OneOf(Isolation), _OneOf(State)
_LOGSOURCE = _OneOf(LogSource)
_EXIT_CODE = _Nullable(INT)
_SEQUENCE = _Count("{name} must be 0 or a line's sequence number, not {value}")


@dataclass(frozen=True)
class ScriptFile(WireType):
    """One file sent with a script: ``length`` bytes of the start call's stream."""

    name: str = wire("Name", TEXT)
    length: int = wire("Length", _Count("{name} must be 0 or more bytes, got {value}"))


MAX_LIMIT = 2**62  # bytes or processes: more than any machine has
MAX_CPU_WEIGHT = 10000  # cgroup v2's cpu.weight range is 1 to 10000 (100: the default)


@dataclass(frozen=True)
class ScriptLimits(WireType):
    """What one script (with everything it starts) may use, where the agent has cgroups."""

    memory_bytes: int | None = wire("MemoryBytes", _Positive(1, MAX_LIMIT), default=None)
    pids: int | None = wire("Pids", _Positive(1, MAX_LIMIT), default=None)
    cpu_weight: int | None = wire("CpuWeight", _Positive(1, MAX_CPU_WEIGHT), default=None)


@dataclass(frozen=True)
class StartScriptRequest(WireType):
    METHOD = "scripts.start"

    ticket: str = wire("ScriptTicket", TEXT)
    body: str = wire("ScriptBody", TEXT)
    syntax: Syntax = wire("Syntax", _SYNTAX, default=Syntax.BASH, blank_is_default=True)
    arguments: tuple[str, ...] = wire("Arguments", TEXTS, default=())
    files: tuple[ScriptFile, ...] = wire(
        "Files",
        _Records(ScriptFile, "each of Files needs Name (text) and Length (bytes)"),
        default=(),
    )
    isolation: Isolation = wire(
        "Isolation", _ISOLATION, default=Isolation.FULL, blank_is_default=True
    )
    mutex_name: str = wire("IsolationMutexName", TEXT, default=DEFAULT_MUTEX, blank_is_default=True)
    mutex_timeout: float | None = wire("IsolationMutexTimeout", SECONDS, default=None)
    task_id: str = wire("TaskId", TEXT, default="")
    # Whose uid the script runs as (agent.scripts.users); absent: the shared default group
    isolation_group: str | None = wire("IsolationGroup", TEXT, default=None)
    grace: float = wire("Grace", SECONDS, default=DEFAULT_GRACE)
    wait: float = wire("DurationToWaitForScriptToFinish", SECONDS, default=0.0)
    # In the script's process environment only: never written to disk, nor echoed
    environment: tuple[tuple[str, str], ...] = wire("Environment", ENVIRONMENT, default=())
    limits: ScriptLimits | None = wire("Limits", _Record(ScriptLimits), default=None)

    def __repr__(self) -> str:
        """Without the Environment's values (they may be secrets)."""
        names = ", ".join(name for name, _ in self.environment)
        return f"StartScriptRequest(ticket={self.ticket!r}, environment names=[{names}])"


@dataclass(frozen=True)
class ScriptStatusRequest(WireType):
    METHOD = "scripts.status"

    ticket: str = wire("ScriptTicket", TEXT)
    last_sequence: int = wire("LastLogSequence", _SEQUENCE)
    stream_logs: bool = wire("StreamLogs", BOOL, default=False)


@dataclass(frozen=True)
class CancelScriptRequest(WireType):
    METHOD = "scripts.cancel"

    ticket: str = wire("ScriptTicket", TEXT)
    last_sequence: int = wire("LastLogSequence", _SEQUENCE)


@dataclass(frozen=True)
class CompleteScriptRequest(WireType):
    """Answered with null."""

    METHOD = "scripts.complete"

    ticket: str = wire("ScriptTicket", TEXT)


@dataclass(frozen=True)
class LogRun(WireType):
    """Consecutive lines of one source. ``text`` is None when the bytes are streamed."""

    source: LogSource = wire("Source", _LOGSOURCE)
    sequence: int = wire("Sequence", INT)
    count: int = wire("Count", INT)
    length: int = wire("Length", INT)
    occurred: str = wire("Occurred", TEXT)
    text: str | None = wire("Text", TEXT, default=None)


_LOG_RUNS = _Records(LogRun)


@dataclass(frozen=True)
class ScriptStatus(WireType):
    """The reply of scripts.start, scripts.status and scripts.cancel."""

    METHOD = "scripts.status"
    REPLY = True

    ticket: str = wire("Ticket", TEXT)
    state: State = wire("State", _STATE)
    exit_code: int | None = wire("ExitCode", _EXIT_CODE)
    logs: tuple[LogRun, ...] = wire("Logs", _LOG_RUNS)
    next_sequence: int = wire("NextLogSequence", INT)
    more_logs: bool | None = wire("MoreLogs", BOOL, default=None)

    @property
    def finished(self) -> bool:
        """Complete, with no more lines to ask for (without MoreLogs: when no lines came)."""
        more = bool(self.logs) if self.more_logs is None else self.more_logs
        return self.state == State.COMPLETE and not more


CALLS: tuple[tuple[type[WireType], type[WireType] | None], ...] = (
    (CapabilitiesRequest, Capabilities),
    (PingRequest, Pong),
    (UploadRequest, Uploaded),
    (DownloadRequest, Download),
    (StartScriptRequest, ScriptStatus),
    (ScriptStatusRequest, ScriptStatus),
    (CancelScriptRequest, ScriptStatus),
    (CompleteScriptRequest, None),
)
"""Every service method: its request type and its reply type (None: the reply is null)."""
