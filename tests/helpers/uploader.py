"""A client process that starts an upload and then hangs, to be killed mid-upload.

Usage: python -m tests.helpers.uploader URL THUMBPRINT IDENTITY_FILE REMOTE_PATH
Prints "sent" once the first MiB is on its way.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from agent.certs import load_identity
from agent.client import AgentClient, Endpoint
from agent.transport.settings import ChannelSettings


async def main(url: str, thumbprint: str, identity_file: str, remote: str) -> None:
    settings = ChannelSettings(load_identity(Path(identity_file)), "uploader", "test")
    channel = await AgentClient(Endpoint(url, thumbprint), settings).connect()

    async def forever() -> AsyncIterator[bytes]:
        yield b"x" * 1024 * 1024
        print("sent", flush=True)
        await asyncio.Event().wait()

    await channel.call("files", "upload", {"Path": remote, "Length": 10**9}, upload=forever())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
