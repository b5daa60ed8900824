"""The baseline: a bare aiohttp server over the same mutual TLS, no RPC layer.

Usage: python bench/raw_server.py IDENTITY_PEM TRUSTED_PEM UPLOAD_DIR
Prints "PORT <n>" when ready. GET /noop answers a few bytes; POST /upload
streams the body into a file, as the agent's upload does.
"""

from __future__ import annotations

import asyncio
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
        with (Path(upload_dir) / "raw-upload.bin").open("wb") as file:
            async for chunk in request.content.iter_chunked(256 * 1024):
                file.write(chunk)
                length += len(chunk)
        return web.json_response({"Length": length})

    app = web.Application(client_max_size=0)
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
