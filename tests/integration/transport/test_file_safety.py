"""The file service under hostile files and full disks, through a real agent.

FIFOs and devices are refused without blocking the agent; a full disk is
``insufficient_space`` and leaves nothing, never a success with a short file;
the instance's own identity, configuration and the scripts' state are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.errors import RemoteError
from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually
from tests.helpers.smalldisk import fill
from tests.helpers.smalldisk import small_disk as small_disk_at

MIB = 1024 * 1024
HANG = 30.0  # seconds after which a call that should be answered at once counts as hung


def leftovers(folder: Path, name: str) -> list[str]:
    """The target and any temporary of an upload of ``name`` in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if name in p.name)


# -- FIFOs and devices ---------------------------------------------------------


def release(fifo: Path) -> None:
    """Open the FIFO's write side once, freeing an agent stuck opening it (the bug)."""
    with contextlib.suppress(OSError):  # ENXIO: nobody is waiting to read, as it should be
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("kind", ["fifo", "device"])
async def test_a_fifo_or_device_download_is_refused_without_blocking_anyone(
    agent: AgentProcess, tmp_path: Path, kind: str
) -> None:
    special = agent.home / "Files" / kind
    special.parent.mkdir(exist_ok=True)
    if kind == "fifo":
        os.mkfifo(special)
    else:
        os.mknod(special, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    expected = "a FIFO (named pipe)" if kind == "fifo" else "a character device"
    try:
        async with agent.client() as one, agent.client() as other:
            download = asyncio.create_task(one.download(f"Files/{kind}", tmp_path / kind))
            # another connection is answered while (or after) the download is handled
            pong = await asyncio.wait_for(other.call("capabilities", "ping"), HANG)
            assert pong == {"Pong": True}
            with pytest.raises(RemoteError) as caught:
                await asyncio.wait_for(download, HANG)
    finally:
        if kind == "fifo":
            release(special)
    assert caught.value.kind == "refused"
    assert f"{special}: it is {expected}, not a regular file" in str(caught.value)
    assert not (tmp_path / kind).exists()


async def test_an_upload_over_a_fifo_is_refused_and_leaves_it(
    agent: AgentProcess, tmp_path: Path
) -> None:
    fifo = agent.home / "Files" / "pipe"
    fifo.parent.mkdir(exist_ok=True)
    os.mkfifo(fifo)
    local = tmp_path / "payload"
    local.write_bytes(b"payload")
    try:
        async with agent.client() as hub:
            with pytest.raises(RemoteError) as caught:
                await asyncio.wait_for(hub.upload(local, "Files/pipe"), HANG)
            with pytest.raises(RemoteError) as below:
                await asyncio.wait_for(hub.upload(local, "Files/pipe/inside"), HANG)
    finally:
        release(fifo)
    assert caught.value.kind == "refused"
    assert "it is a FIFO (named pipe), not a regular file" in str(caught.value)
    assert below.value.kind == "refused"
    assert f"{fifo} is a FIFO (named pipe)" in str(below.value)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert leftovers(fifo.parent, "pipe") == ["pipe"]


# -- full disks ----------------------------------------------------------------


@pytest.fixture
def small_disk(agent: AgentProcess) -> Iterator[Path]:
    """A 20 MiB tmpfs mounted at ``<home>/Small``, unmounted afterwards. Needs root."""
    with small_disk_at(agent.home / "Small", 20) as point:
        yield point


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


async def test_concurrent_uploads_never_succeed_with_a_short_file(
    agent: AgentProcess, small_disk: Path, tmp_path: Path
) -> None:
    # each 12 MiB upload passes the free-space rule alone (13.2 + 1 MiB <= 20), both cannot fit
    sent = {name: random_file(tmp_path / name, 12 * MIB) for name in ("a.bin", "b.bin")}
    async with agent.client() as one, agent.client() as two:
        outcomes = await asyncio.gather(
            one.upload(tmp_path / "a.bin", "Small/a.bin"),
            two.upload(tmp_path / "b.bin", "Small/b.bin"),
            return_exceptions=True,
        )
    refused = 0
    for name, outcome in zip(sent, outcomes, strict=True):
        if isinstance(outcome, RemoteError):
            assert outcome.kind == "insufficient_space", outcome
            assert leftovers(small_disk, name) == [], f"{name} was refused but left files"
            refused += 1
        else:
            assert not isinstance(outcome, BaseException), outcome
            assert outcome["Sha256"] == hashlib.sha256(sent[name]).hexdigest()
            assert (small_disk / name).read_bytes() == sent[name], f"{name} differs on disk"
            assert leftovers(small_disk, name) == [name]
    assert refused >= 1, "24 MiB cannot fit a 20 MiB disk, yet no upload was refused"


async def test_a_disk_filling_up_mid_upload_is_insufficient_space_and_leaves_nothing(
    agent: AgentProcess, small_disk: Path
) -> None:
    length = 8 * MIB
    first = asyncio.Event()
    filled = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * MIB
        first.set()
        await filled.wait()
        for _ in range(length // MIB - 1):
            yield b"x" * MIB

    async with agent.client() as hub:
        channel = await hub.connect()
        upload = asyncio.create_task(
            channel.call("files", "upload", {"Path": "Small/late.bin", "Length": length},
                         upload=body())
        )  # fmt: skip
        await first.wait()
        await eventually(lambda: any(p.name.startswith(".late.bin.") for p in small_disk.iterdir()),
                         "the upload's temporary file exists")  # fmt: skip
        fill(small_disk / "filler")  # from outside, after the agent's space check
        filled.set()
        with pytest.raises(RemoteError) as caught:
            await asyncio.wait_for(upload, HANG)
    assert caught.value.kind == "insufficient_space", caught.value
    assert "filled up while uploading" in str(caught.value)
    assert leftovers(small_disk, "late.bin") == []


# -- the instance's own files --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "what"),
    [("identity.pem", "identity"), ("tentacle.yaml", "configuration"),
     ("Files/hard-link-to-identity", "identity"), ("tentacle.lock", "lock")],
)  # fmt: skip
async def test_the_instances_own_files_are_refused_both_ways(
    agent: AgentProcess, tmp_path: Path, path: str, what: str
) -> None:
    identity = agent.instance.config.identity_path
    config = agent.instance.config_path
    assert config.parent == agent.home  # where a default instance keeps its config
    if "hard-link" in path:
        (agent.home / "Files").mkdir(exist_ok=True)
        os.link(identity, agent.home / path)
    lock = agent.home / "tentacle.lock"
    before = {identity: identity.read_bytes(), config: config.read_bytes(),
              lock: lock.read_bytes()}  # fmt: skip
    local = tmp_path / "forged"
    local.write_text("forged")
    async with agent.client() as hub:
        with pytest.raises(RemoteError) as download:
            await hub.download(path, tmp_path / "stolen")
        with pytest.raises(RemoteError) as upload:
            await hub.upload(local, path)
    for caught, verb in ((download, "reads"), (upload, "writes")):
        assert caught.value.kind == "refused"
        assert f"is this instance's {what}" in str(caught.value)
        assert f"the file service never {verb} it" in str(caught.value)
    assert not (tmp_path / "stolen").exists()
    assert {path: path.read_bytes() for path in before} == before
    assert [p.name for p in agent.home.iterdir() if p.name.endswith(".partial")] == []


@pytest.mark.parametrize("path", ["Work/forged/state.json", "Work/forged/rc", "Work/x.bin"])
async def test_uploads_into_the_scripts_work_folder_are_refused(
    agent: AgentProcess, tmp_path: Path, path: str
) -> None:
    local = tmp_path / "forged"
    local.write_text("0\n")
    async with agent.client() as hub:
        with pytest.raises(RemoteError) as caught:
            await hub.upload(local, path)
    assert caught.value.kind == "refused"
    assert "which only the script service writes" in str(caught.value)
    assert sorted(p.name for p in (agent.home / "Work").iterdir()) == []
