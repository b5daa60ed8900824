"""`tentacle client …` against a real agent: what a person debugging a worker sees."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.helpers.agent import AgentProcess


def endpoint(agent: AgentProcess, thumbprint: str | None = None) -> list[str]:
    return ["--endpoint", agent.url, "--thumbprint", thumbprint or agent.thumbprint]


def test_capabilities(agent: AgentProcess) -> None:
    result = agent.cli.ok("client", "--instance", "hub", "capabilities", *endpoint(agent),
                          "--format", "json")  # fmt: skip
    expected = ["capabilities/1", "files/1", "scripts/1", "scripts/2"]
    assert result.json()["SupportedCapabilities"] == expected
    text = agent.cli.ok("client", "--instance", "hub", "capabilities", *endpoint(agent)).out
    assert "SupportedCapabilities: capabilities/1, files/1, scripts/1, scripts/2" in text


def test_upload_then_download(agent: AgentProcess, tmp_path: Path) -> None:
    local = tmp_path / "app.zip"
    local.write_bytes(os.urandom(300_000))
    sha256 = hashlib.sha256(local.read_bytes()).hexdigest()
    uploaded = agent.cli.ok("client", "--instance", "hub", "upload", *endpoint(agent),
                            "--format", "json", str(local), "Files/app.zip").json()  # fmt: skip
    assert uploaded == {
        "FullPath": str(agent.home / "Files" / "app.zip"),
        "Length": 300_000,
        "Sha256": sha256,
    }
    back = tmp_path / "back.zip"
    shown = agent.cli.ok("client", "--instance", "hub", "download", *endpoint(agent),
                         "Files/app.zip", str(back)).out  # fmt: skip
    assert f"Sha256:   {sha256}" in shown
    assert back.read_bytes() == local.read_bytes()


def test_failures_are_one_clear_line(agent: AgentProcess, tmp_path: Path) -> None:
    wrong = "CD" * 20
    failure = agent.cli.fails("client", "--instance", "hub", "capabilities",
                              *endpoint(agent, wrong))  # fmt: skip
    assert f"presented certificate {agent.thumbprint}" in failure.err
    assert (
        f"but thumbprint {wrong} was expected: check --thumbprint (the Thumbprint: line "
        "of `tentacle show-thumbprint --instance NAME` on the agent)" in failure.err
    )
    failure = agent.cli.fails("client", "--instance", "agent", "capabilities", *endpoint(agent))
    assert "not trust our certificate" in failure.err
    failure = agent.cli.fails("client", "--instance", "hub", "download", *endpoint(agent),
                              "../../etc/passwd", str(tmp_path / "x"))  # fmt: skip
    assert failure.err.startswith("error: refused: path '../../etc/passwd'")
    assert len(failure.err.strip().splitlines()) == 1
    assert failure.err.strip().endswith(
        "`tentacle configure --instance INSTANCE --file-root DIR` on the agent allows another"
    )
    (tmp_path / "state").write_text("forged")
    failure = agent.cli.fails("client", "--instance", "hub", "upload", *endpoint(agent),
                              str(tmp_path / "state"), "Work/forged")  # fmt: skip
    assert "which only the script service writes" in failure.err
    assert "scripts.start Files (`tentacle client run-script --file PATH`)" in failure.err
    assert len(failure.err.strip().splitlines()) == 1
    failure = agent.cli.fails("client", "--instance", "hub", "capabilities",
                              "--endpoint", "ftp://x", "--thumbprint", wrong)  # fmt: skip
    assert "expected an endpoint like https://HOST:PORT/" in failure.err


def test_download_into_a_folder_or_a_missing_one(agent: AgentProcess, tmp_path: Path) -> None:
    (agent.home / "Files").mkdir(exist_ok=True)
    (agent.home / "Files" / "notes.txt").write_text("notes")
    args = ("client", "--instance", "hub", "download", *endpoint(agent), "Files/notes.txt")
    agent.cli.ok(*args, str(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "notes"
    missing = tmp_path / "no" / "such"
    failure = agent.cli.fails(*args, str(missing / "notes.txt"), code=2)
    assert failure.err.splitlines()[-1] == (
        f"error: Invalid value for LOCAL: the folder {missing} does not exist; create it first"
    )
    assert "partial" not in failure.err
