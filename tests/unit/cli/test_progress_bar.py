"""The progress bar of uploads and downloads, on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import sys

import pytest

from agent.cli.output import progress_bar


@pytest.mark.parametrize("length", [None, 10])
def test_a_bar_of_known_or_unknown_length_runs_on_a_terminal(
    length: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download does not know its size: the bar must still work (it raised TypeError
    from click, which only the newcomer typing at a terminal saw)."""
    controller, terminal = pty.openpty()
    with os.fdopen(terminal, "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        with progress_bar(length, "Downloading") as progress:
            assert progress is not None  # a terminal: there is a bar
            progress(4)
            progress(6)
    shown = os.read(controller, 4096).decode()
    os.close(controller)
    assert "Downloading" in shown


def test_no_bar_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    reader, writer = os.pipe()
    with os.fdopen(writer, "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        with progress_bar(10, "Uploading") as progress:
            assert progress is None
    os.close(reader)
