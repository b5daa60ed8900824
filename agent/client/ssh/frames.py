"""The step helper: one long-lived python3 process per connection on the target, and
its framing. No I/O here (agent.client.ssh.helper runs it).

Where the target has python3, a connection's steps do not each open a channel
running the shell wrapper (remote.WRAPPER): one channel runs the helper's program
(agent.client.ssh.helper_program), and each step is a frame on its stdin. For
each step the helper forks a keeper that does the wrapper's work without
starting a process for it: it takes the isolation
mutex with flock(2) in-process (exclusive for "full", shared for "none", bounded
by the step's wait; the keeper holds it until the script ends, so a dropped
connection does not release it early), creates the ticket's ``.started`` with
O_EXCL and writes the wrapper's facts in it (grace, wrapper, lock, pgid, exit:
remote.CANCEL and a re-execute read them as they read the wrapper's), starts the
script in a process group of its own (``bash -c BODY``; other syntaxes their
program on ``.script``) with the step's environment, which came in the frame and
goes into the script's environment only, and records its exit code (128+N for a
signal). The helper relays each step's stdout and stderr as they come, framed.

Frames both ways are ``HEADER`` (kind, step number, length) and that many bytes:

- to the helper: ``R`` a step to run, its fields as JSON (``run_frame``);
- from it: ``H`` hello once (``HELLO`` and python's version), then per step ``S``
  its status (``started``, ``finished N``, ``running``, ``failed MESSAGE``), ``O``
  and ``E`` its stdout and stderr bytes, and last ``X`` its exit code (empty when
  there is none: it did not start, or its keeper died).

A frame cut short (the connection dropped while it came) runs nothing: the
helper acts on whole frames only. The program below keeps to python 3.6.
"""

from __future__ import annotations

import json
import re
import shlex
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HEADER = struct.Struct(">cII")  # kind, step number, length of the payload
LIMIT = 64 * 1024 * 1024  # the largest payload either side accepts
HELLO = b"tentacle-step-helper 1"
RUN, HELLO_KIND, STATUS, STDOUT, STDERR, EXIT = b"R", b"H", b"S", b"O", b"E", b"X"
KINDS = {HELLO_KIND, STATUS, STDOUT, STDERR, EXIT}  # what the helper sends


class FrameError(ValueError):
    """The helper's output is not frames (it is not the helper, or it broke)."""


@dataclass(frozen=True)
class Frame:
    kind: bytes
    step: int
    data: bytes


class FrameDecoder:
    """The helper's stdout, fed in pieces as they come, as whole frames."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by ``data``; FrameError for an unknown kind or a
        length beyond LIMIT (nothing after it can be trusted)."""
        self._pending += data
        frames = []
        while len(self._pending) >= HEADER.size:
            kind, step, length = HEADER.unpack_from(self._pending)
            if kind not in KINDS or length > LIMIT:
                raise FrameError(
                    f"the step helper sent a bad frame (kind {kind!r}, {length} bytes); "
                    f"expected one of {sorted(k.decode() for k in KINDS)} up to {LIMIT} bytes"
                )
            end = HEADER.size + length
            if len(self._pending) < end:
                break
            frames.append(Frame(kind, step, bytes(self._pending[HEADER.size : end])))
            del self._pending[:end]
        return frames

    @property
    def partial(self) -> bool:
        """Whether a frame was begun and not finished."""
        return bool(self._pending)


def frame(kind: bytes, step: int, data: bytes) -> bytes:
    return HEADER.pack(kind, step, len(data)) + data


@dataclass(frozen=True)
class StepFields:
    """What a keeper needs: the wrapper's arguments, the environment and the body."""

    root: str
    ticket: str
    isolation: str
    mutex: str  # the lock file's name (remote.mutex_file)
    wait_for: str  # seconds, "" for no bound
    grace: str
    program: str
    arguments: Sequence[str]
    environment: Mapping[str, str]
    body: str


def run_frame(step: int, fields: StepFields) -> bytes:
    """The ``R`` frame running ``fields`` as step ``step``. NULs are left out (no
    argument or environment value can hold one, as on the wrapper's way).
    FrameError for a request beyond LIMIT (the helper would refuse it, and end)."""
    document = {
        "root": fields.root,
        "ticket": fields.ticket,
        "isolation": fields.isolation,
        "mutex": fields.mutex,
        "wait_for": fields.wait_for,
        "grace": fields.grace,
        "program": fields.program,
        "arguments": [_clean(argument) for argument in fields.arguments],
        "environment": {_clean(k): _clean(v) for k, v in fields.environment.items()},
        "body": _clean(fields.body),
    }
    data = json.dumps(document).encode()
    if len(data) > LIMIT:
        raise FrameError(
            f"the step's body, arguments and environment come to {len(data)} bytes; "
            f"the step helper takes up to {LIMIT}"
        )
    return frame(RUN, step, data)


def _clean(text: str) -> str:
    return text.replace("\0", "")


def parse_status(data: bytes) -> tuple[str, int | None, str]:
    """An ``S`` frame: (state, code, message): ("started", None, ""), ("finished",
    N, ""), ("running", None, ""), ("failed", None, why). FrameError otherwise."""
    text = data.decode("utf-8", "replace")
    if text in ("started", "running"):
        return text, None, ""
    if text.startswith("failed "):
        return "failed", None, text[len("failed ") :]
    match = re.fullmatch(r"finished (-?\d+)", text)
    if match:
        return "finished", int(match.group(1)), ""
    raise FrameError(f"unexpected step helper status {text[:200]!r}")


def parse_exit(data: bytes) -> int | None:
    """An ``X`` frame's code; None when the step has none. FrameError otherwise."""
    if not data:
        return None
    if not re.fullmatch(rb"-?\d+", data):
        raise FrameError(f"unexpected step helper exit code {data[:50]!r}")
    return int(data)


def parse_hello(data: bytes) -> str:
    """The ``H`` frame's python version (``3.11``); FrameError if it is not a helper."""
    words = data.split()
    if data[: len(HELLO)] != HELLO or len(words) != 3:
        raise FrameError(f"expected the step helper's hello, got {data[:100]!r}")
    return words[2].decode("ascii", "replace")


def boot_command(program: bytes) -> str:
    """The helper's channel command: python3 reads ``program`` (sent first on its
    stdin, exactly that many bytes) and runs it; 127 without python3 (the wrapper
    runs the steps then). ``-I``: no user site, no PYTHON* variables."""
    size = len(program)
    boot = (
        "import os\nd=b''\n"
        f"while len(d)<{size}:\n c=os.read(0,{size}-len(d))\n"
        " if not c: raise SystemExit(3)\n d+=c\n"
        "exec(compile(d,'tentacle-step-helper','exec'))"
    )
    return f"command -v python3 >/dev/null 2>&1 || exit 127; exec python3 -I -c {shlex.quote(boot)}"
