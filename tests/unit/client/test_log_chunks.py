"""LogChunk's two views of its lines, and the client's delivery of a status's runs."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from agent.client.scripts import LogChunk, _Answer, _deliver
from agent.protocol.services import LogRun, LogSource, ScriptStatus, State

WHEN = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)
lines = st.lists(st.text(st.characters(blacklist_characters="\n"), max_size=5), min_size=1)


@given(lines)
def test_lines_and_text_are_one_another(some: list[str]) -> None:
    by_lines, by_text = (
        LogChunk("stdout", 7, some, WHEN),
        LogChunk.of_text("stdout", 7, "\n".join(some), WHEN),
    )
    assert by_lines.text == by_text.text == "\n".join(some)
    assert by_lines.lines == by_text.lines == some
    assert by_lines == by_text
    assert by_lines != LogChunk("stderr", 7, some, WHEN)


def _status(runs: list[tuple[int, list[str]]]) -> _Answer:
    """A streamed status answer holding ``runs`` (first sequence, lines) of stdout."""
    texts = ["\n".join(run) for _, run in runs]
    logs = tuple(
        LogRun(LogSource.STDOUT, first, len(run), len(text.encode()), WHEN.isoformat())
        for (first, run), text in zip(runs, texts, strict=True)
    )
    last = runs[-1][0] + len(runs[-1][1]) - 1  # NextLogSequence: the last line's
    reply = ScriptStatus("t", State.RUNNING, None, logs, last)
    return _Answer(reply, "".join(texts).encode())


def test_lines_handed_over_before_are_skipped() -> None:
    status = _status([(1, ["a", "b", "c"]), (4, ["d", "é"])])
    for last, expected in [(0, ["a", "b", "c", "d", "é"]), (2, ["c", "d", "é"]),
                           (3, ["d", "é"]), (4, ["é"]), (5, [])]:  # fmt: skip
        got: list[LogChunk] = []
        assert _deliver(status, last, got.append) == 5
        numbered = [(c.first + i, line) for c in got for i, line in enumerate(c.lines)]
        assert numbered == list(enumerate(expected, start=last + 1)), last
