"""File transfer over a real connection: integrity, path safety, concurrency, failures."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.client import AgentClient
from agent.errors import RemoteError
from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually

MIB = 1024 * 1024


@pytest.fixture
def agent(any_agent: AgentProcess) -> AgentProcess:
    """File transfer is tested against a listening agent and a polling one."""
    return any_agent


def client(agent: AgentProcess) -> AgentClient:
    return agent.client()


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as file:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 4 * MIB))
            file.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("size", [0, 1, 256 * MIB], ids=["0B", "1B", "256MiB"])
async def test_upload_and_download_keep_every_byte(
    agent: AgentProcess, tmp_path: Path, size: int
) -> None:
    local = tmp_path / "local.bin"
    sha256 = random_file(local, size)
    seen: list[int] = []
    async with client(agent) as hub:
        uploaded = await hub.upload(local, "Files/package.bin", progress=seen.append)
        assert uploaded == {
            "FullPath": str(agent.home / "Files" / "package.bin"),
            "Length": size,
            "Sha256": sha256,
        }
        assert sum(seen) == size
        back = tmp_path / "back.bin"
        downloaded = await hub.download("Files/package.bin", back)
    assert downloaded == {"FullPath": str(back), "Length": size, "Sha256": sha256}
    assert hashlib.sha256((agent.home / "Files" / "package.bin").read_bytes()).hexdigest() == sha256
    assert hashlib.sha256(back.read_bytes()).hexdigest() == sha256
    os.unlink(agent.home / "Files" / "package.bin")


@pytest.mark.parametrize(
    "path",
    [
        "../outside.txt",
        "Files/../../outside.txt",
        "..\\outside.txt",
        "/etc/passwd",
        "/tmp/outside.txt",
        "link-out/outside.txt",
        "link-to-file",
        "",
        "nul\x00byte",
    ],
)
async def test_every_path_escape_is_refused(agent: AgentProcess, tmp_path: Path, path: str) -> None:
    outside = agent.home.parent
    (agent.home / "link-out").symlink_to(outside, target_is_directory=True)
    (agent.home / "link-to-file").symlink_to(outside / "secret.txt")
    (outside / "secret.txt").write_text("secret")
    before = sorted(p.name for p in outside.iterdir())
    local = tmp_path / "payload"
    local.write_text("payload")
    async with client(agent) as hub:
        with pytest.raises(RemoteError) as upload:
            await hub.upload(local, path)
        with pytest.raises(RemoteError) as download:
            await hub.download(path, tmp_path / "fetched")
    for caught in (upload, download):
        assert caught.value.kind == "refused"
    assert "outside the allowed roots" in str(upload.value) or path in ("", "nul\x00byte")
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "secret.txt").read_text() == "secret"
    assert not (tmp_path / "fetched").exists()


async def test_a_configured_root_allows_more(tentacle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    extra = tmp_path / "extra"
    extra.mkdir()
    agent = AgentProcess(tentacle, env={"TENTACLE_FILE_ROOTS": str(extra)}).start()
    try:
        local = tmp_path / "payload"
        local.write_text("x")
        async with client(agent) as hub:
            result = await hub.upload(local, str(extra / "in-root.txt"))
        assert result["FullPath"] == str(extra / "in-root.txt")
    finally:
        agent.stop()


async def test_download_of_a_missing_file_is_not_found(agent: AgentProcess, tmp_path: Path) -> None:
    target = tmp_path / "downloads"
    target.mkdir()
    async with client(agent) as hub:
        with pytest.raises(RemoteError) as caught:
            await hub.download("Files/none.zip", target / "none.zip")
    assert caught.value.kind == "not_found"
    assert str(agent.home / "Files" / "none.zip") in str(caught.value)
    assert list(target.iterdir()) == []


async def test_a_small_call_completes_while_a_large_upload_is_in_flight(
    agent: AgentProcess,
) -> None:
    halfway = asyncio.Event()
    release = asyncio.Event()
    length = 64 * MIB

    async def large() -> AsyncIterator[bytes]:
        chunk = b"x" * MIB
        for sent in range(length // MIB):
            if sent == 32:
                halfway.set()
                await release.wait()
            yield chunk

    async with client(agent) as hub:
        channel = await hub.connect()
        upload = asyncio.create_task(
            channel.call("files", "upload", {"Path": "big", "Length": length}, upload=large())
        )
        await halfway.wait()
        found = await hub.capabilities()  # answered while the upload stream is open
        assert found["SupportedCapabilities"]
        assert not upload.done()
        release.set()
        assert (await upload).value["Length"] == length


async def test_a_length_mismatch_leaves_no_file(agent: AgentProcess) -> None:
    async def short() -> AsyncIterator[bytes]:
        yield b"only this"

    async with client(agent) as hub:
        channel = await hub.connect()
        with pytest.raises(RemoteError, match="received 9 bytes, but Length said 100"):
            await channel.call("files", "upload", {"Path": "short", "Length": 100}, upload=short())
    assert sorted(p.name for p in agent.home.iterdir() if "short" in p.name) == []


async def test_a_peer_vanishing_mid_upload_leaves_no_partial_file(
    listening_agent: AgentProcess,
) -> None:
    agent = listening_agent  # the uploader process dials the agent
    uploader = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.uploader", agent.url, agent.thumbprint,
         str(agent.caller_identity_path), "vanished.bin"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3],
    )  # fmt: skip
    assert uploader.stdout is not None
    assert uploader.stdout.readline().strip() == "sent"
    agent.wait_for_log("connection from uploader (")
    uploader.send_signal(signal.SIGKILL)
    uploader.wait()
    agent.wait_for_log("connection from")  # the close line follows the clean-up
    agent.wait_for_log(" closed: ")
    assert [p.name for p in agent.home.iterdir() if "vanished" in p.name] == []


async def test_cancelling_an_upload_removes_its_partial_file(agent: AgentProcess) -> None:
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"x" * MIB
        started.set()
        await asyncio.Event().wait()

    async with client(agent) as hub:
        channel = await hub.connect()
        upload = asyncio.create_task(
            channel.call("files", "upload", {"Path": "cancelled.bin", "Length": 8 * MIB},
                         upload=stalled())
        )  # fmt: skip
        await started.wait()
        await hub.capabilities()  # the upload is now being written on the agent
        assert [p for p in agent.home.iterdir() if p.name.startswith(".cancelled.bin.")]
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
    # the clean-up may wait for a write in progress in a worker thread to end
    await eventually(lambda: not [p for p in agent.home.iterdir() if "cancelled" in p.name],
                     "the cancelled upload's temporary file is removed")  # fmt: skip


async def test_an_upload_larger_than_the_free_space_is_refused_before_writing(
    agent: AgentProcess,
) -> None:
    async def never() -> AsyncIterator[bytes]:
        yield b"x"

    petabyte = 2**50
    async with client(agent) as hub:
        channel = await hub.connect()
        with pytest.raises(RemoteError) as caught:
            await channel.call("files", "upload", {"Path": "huge", "Length": petabyte},
                               upload=never())  # fmt: skip
    assert caught.value.kind == "insufficient_space"
    assert f"uploading {petabyte} bytes" in str(caught.value)
    assert not any("huge" in p.name for p in agent.home.iterdir())
