"""The step helper's framing (sans-I/O), and its program run here as on a target: a
real python3 process reading frames on its stdin, its keepers real processes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.client.ssh import frames
from agent.client.ssh.frames import Frame, FrameDecoder, FrameError, StepFields
from agent.client.ssh.helper_program import PROGRAM
from tests.helpers.eventually import eventually

HELLO_FRAME = frames.frame(frames.HELLO_KIND, 0, b"tentacle-step-helper 1 3.11")


def test_frames_come_whole_however_the_bytes_are_cut() -> None:
    stream = HELLO_FRAME + frames.frame(b"O", 7, b"hi\n") + frames.frame(b"X", 7, b"0")
    decoder = FrameDecoder()
    found = [f for byte in range(len(stream)) for f in decoder.feed(stream[byte : byte + 1])]
    assert found == [
        Frame(b"H", 0, b"tentacle-step-helper 1 3.11"),
        Frame(b"O", 7, b"hi\n"),
        Frame(b"X", 7, b"0"),
    ]
    assert not decoder.partial
    assert FrameDecoder().feed(stream) == found
    cut = FrameDecoder()
    assert cut.feed(stream[:-1]) == found[:2]
    assert cut.partial


def test_a_bad_frame_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(FrameError, match=r"kind b'Q'.*expected one of"):
        FrameDecoder().feed(frames.frame(b"Q", 1, b""))
    with pytest.raises(FrameError, match="up to"):
        FrameDecoder().feed(frames.HEADER.pack(b"O", 1, frames.LIMIT + 1))


def test_the_answers_parse_and_anything_else_is_refused() -> None:
    assert frames.parse_status(b"started") == ("started", None, "")
    assert frames.parse_status(b"running") == ("running", None, "")
    assert frames.parse_status(b"finished 143") == ("finished", 143, "")
    assert frames.parse_status(b"failed no room") == ("failed", None, "no room")
    assert frames.parse_exit(b"3") == 3
    assert frames.parse_exit(b"") is None
    assert frames.parse_hello(b"tentacle-step-helper 1 3.6") == "3.6"
    for bad_status in (b"done", b"finished x", b""):
        with pytest.raises(FrameError, match="status"):
            frames.parse_status(bad_status)
    with pytest.raises(FrameError, match="exit code"):
        frames.parse_exit(b"zero")
    with pytest.raises(FrameError, match="hello"):
        frames.parse_hello(b"SSH-2.0-OpenSSH")


def test_a_step_request_carries_its_fields_without_nul() -> None:
    fields = _fields("/r", "t1", body="echo a\0b", environment={"K": "v\0w"})
    data = frames.run_frame(9, fields)
    [(kind, step, length)] = [frames.HEADER.unpack_from(data)]
    assert (kind, step, length) == (b"R", 9, len(data) - frames.HEADER.size)
    document = json.loads(data[frames.HEADER.size :])
    assert document["body"] == "echo ab"
    assert document["environment"] == {"K": "vw"}
    assert document["arguments"] == ["a b"]
    with pytest.raises(FrameError, match="the step helper takes up to"):
        frames.run_frame(1, _fields("/r", "t", body="x" * frames.LIMIT))


def _fields(root: str, ticket: str, **changed: object) -> StepFields:
    values: dict[str, object] = {
        "root": root, "ticket": ticket, "isolation": "full", "mutex": "RunningScript",
        "wait_for": "", "grace": "1", "program": "bash", "arguments": ["a b"],
        "environment": {"SECRET": "s3"}, "body": 'echo "$1 $SECRET"; echo err >&2; exit 3',
    }  # fmt: skip
    values.update(changed)
    return StepFields(**values)  # type: ignore[arg-type]


class Helper:
    """The helper program as a target runs it: ``sh -c boot_command``, the program sent
    on its stdin, frames both ways."""

    def __init__(self) -> None:
        program = PROGRAM.encode()
        self.process = subprocess.Popen(
            ["sh", "-c", frames.boot_command(program)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []
        self.send(program)
        assert frames.parse_hello(self.next().data)

    def send(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def next(self) -> Frame:
        while not self.frames:
            chunk = os.read(self.stdout.fileno(), 65536)
            assert chunk, "the helper ended"
            self.frames += self.decoder.feed(chunk)
        return self.frames.pop(0)

    def run(self, step: int, fields: StepFields) -> list[Frame]:
        """The step's frames up to its exit code."""
        self.send(frames.run_frame(step, fields))
        return self.until_exit(step)

    def until_exit(self, step: int) -> list[Frame]:
        found: list[Frame] = []
        while not found or found[-1].kind != frames.EXIT:
            frame = self.next()
            assert frame.step == step
            found.append(frame)
        return found

    def close(self) -> int:
        self.stdin.close()
        return self.process.wait(timeout=60)


@pytest.fixture
def helper() -> Iterator[Helper]:
    running = Helper()
    yield running
    running.close()


def _joined(found: list[Frame], kind: bytes) -> bytes:
    return b"".join(f.data for f in found if f.kind == kind)


async def test_a_step_streams_records_and_never_starts_twice(
    helper: Helper, tmp_path: Path
) -> None:
    found = helper.run(1, _fields(str(tmp_path), "t1"))
    assert found[0] == Frame(b"S", 1, b"started")
    assert (_joined(found, b"O"), _joined(found, b"E")) == (b"a b s3\n", b"err\n")
    assert found[-1] == Frame(b"X", 1, b"3")
    folder = tmp_path / "Work" / "t1"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    facts = dict(line.split(" ", 1) for line in (folder / ".started").read_text().splitlines())
    assert set(facts) == {"grace", "wrapper", "lock", "pgid", "exit"}
    assert facts["exit"] == "3"
    assert b"s3" not in (folder / ".started").read_bytes()  # the environment: not on disk
    again = helper.run(2, _fields(str(tmp_path), "t1"))
    assert again == [Frame(b"S", 2, b"finished 3"), Frame(b"X", 2, b"")]
    python = helper.run(3, _fields(str(tmp_path), "t2", program="python3", body="print(2 + 2)"))
    assert (_joined(python, b"O"), python[-1].data) == (b"4\n", b"0")
    script = tmp_path / "Work" / "t2" / ".script"
    await eventually(lambda: not script.exists(), "the workspace is cleaned")


def test_signals_missing_programs_and_bad_requests(helper: Helper, tmp_path: Path) -> None:
    killed = helper.run(1, _fields(str(tmp_path), "k", body="kill -TERM $$"))
    assert killed[-1].data == str(128 + signal.SIGTERM).encode()
    # SIGPIPE is the script's as usual (python ignores it, its children must not)
    piped = helper.run(2, _fields(str(tmp_path), "p", body="yes | head -1; echo ${PIPESTATUS[0]}"))
    assert _joined(piped, b"O") == f"y\n{128 + signal.SIGPIPE}\n".encode()
    missing = helper.run(3, _fields(str(tmp_path), "m", program="no-such-program"))
    assert _joined(missing, b"E") == b"cannot start no-such-program: No such file or directory\n"
    assert missing[-1].data == b"127"
    helper.send(frames.frame(b"R", 4, b"{not json"))
    bad = helper.until_exit(4)
    assert bad[0].data.startswith(b"failed a bad step request")
    assert bad[-1] == Frame(b"X", 4, b"")
    escaping = helper.run(5, _fields(str(tmp_path), "../x"))
    assert escaping[0].data.startswith(b"failed the ticket or the mutex cannot name a file")
    assert not (tmp_path / "x").exists()


def test_the_mutex_wait_times_out_or_is_cancelled(helper: Helper, tmp_path: Path) -> None:
    (tmp_path / "Locks").mkdir()
    with open(tmp_path / "Locks" / "M", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        timed = helper.run(1, _fields(str(tmp_path), "w1", mutex="M", wait_for="0.2"))
        assert _joined(timed, b"E") == b"Timed out after 0.2 s waiting for the isolation mutex M\n"
        assert timed[-1].data == b"1"
        helper.send(frames.run_frame(2, _fields(str(tmp_path), "w2", mutex="M")))
        assert helper.next() == Frame(b"S", 2, b"started")
        started = tmp_path / "Work" / "w2" / ".started"
        lock = next(line.split()[1] for line in started.read_text().splitlines() if "lock" in line)
        (started.parent / ".cancel").touch()
        os.kill(int(lock), signal.SIGTERM)  # what remote.CANCEL does to a step that waits
        cancelled = helper.until_exit(2)
        assert _joined(cancelled, b"E") == b"Cancelled while waiting for the isolation mutex M\n"
        assert cancelled[-1].data == b"143"
        assert "pgid" not in started.read_text()  # the script never ran


def test_a_frame_cut_short_runs_nothing(tmp_path: Path) -> None:
    helper = Helper()
    whole = frames.run_frame(1, _fields(str(tmp_path), "cut", body=f"touch {tmp_path}/ran"))
    helper.send(whole[:-3])
    assert helper.close() == 0  # its stdin ended: it ends, having run nothing
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "Work" / "cut").exists()
