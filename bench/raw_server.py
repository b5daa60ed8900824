"""The baseline: a bare aiohttp server over the same mutual TLS, no RPC layer.

Usage: python bench/raw_server.py IDENTITY_PEM TRUSTED_PEM UPLOAD_DIR
Prints "PORT <n>" when ready. GET /noop answers a few bytes; POST /sink reads
a body and discards it; POST /upload streams the body into a file and hashes it
(SHA-256), as the agent's upload does, so that the comparison measures the
channel, not the work around it.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

from aiohttp import web

from agent.certs import load_identity
from agent.transport.tls import server_context


async def main(identity_file: str, trusted_file: str, upload_dir: str) -> None:
    context = server_context(load_identity(Path(identity_file)), [Path(trusted_file).read_text()])

    async def noop(request: web.Request) -> web.Response:
        return web.json_response({"Pong": True})

    async def upload(request: web.Request) -> web.Response:
        length = 0
        digest = hashlib.sha256()
        with (Path(upload_dir) / "raw-upload.bin").open("wb", buffering=0) as file:
            async for chunk in request.content.iter_chunked(128 * 1024):
                file.write(chunk)
                digest.update(chunk)
                length += len(chunk)
        return web.json_response({"Length": length, "Sha256": digest.hexdigest()})

    async def sink(request: web.Request) -> web.Response:
        length = 0
        async for chunk in request.content.iter_chunked(128 * 1024):
            length += len(chunk)
        return web.json_response({"Length": length})

    app = web.Application(client_max_size=0)
    app.router.add_post("/sink", sink)
    app.router.add_get("/noop", noop)
    app.router.add_post("/upload", upload)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
