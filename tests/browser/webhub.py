"""A real hub with real agents for the page's browser tests (and `make screenshots`),
and a headless Debian Chromium that trusts exactly that hub's certificate.

The hub runs on an event loop in a thread of its own, so the test drives the
browser with Playwright's sync API in its own thread; ``WebHub.run`` hands a
coroutine (an API call, a worker to add) to the hub's loop and waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import threading
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, Page, Playwright, expect

from agent import __version__
from agent.certs import Identity, save_identity
from agent.hub.home import HubHome, create_home
from agent.hub.keys import Permission
from agent.hub.server import HubServer
from tests.helpers.agent import AgentProcess
from tests.helpers.hub import HubApi, new_key, pinned
from tests.integration.hub.tasks_helpers import add_worker

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
# this machine's flags: no sandbox (containers), nothing fetched from the internet
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CALL_BOUND = 120.0  # seconds: how long a call on the hub's loop may take before the test fails


def spki_pin(identity: Identity) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes: the base64
    SHA-256 of the certificate's SubjectPublicKeyInfo."""
    der = identity.certificate.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium_path() -> str:
    """Debian's chromium, or an error saying how to get it (nothing is downloaded)."""
    found = shutil.which(CHROMIUM) or shutil.which("chromium")
    if found is None:
        raise RuntimeError(
            f"the browser tests need Debian's chromium at {CHROMIUM}: "
            "install it with `bash .ci/system-deps` (apt-get install chromium)"
        )
    return found


def launch(playwright: Playwright, identity: Identity) -> Browser:
    """Headless Chromium trusting only certificates with ``identity``'s key (Playwright
    gives it a fresh --user-data-dir, which the pin needs)."""
    pin = f"--ignore-certificate-errors-spki-list={spki_pin(identity)}"
    return playwright.chromium.launch(executable_path=chromium_path(), args=[*FLAGS, pin])


class WebHub:
    """A hub in ``folder`` on an event loop in a thread, its certificate ``identity``
    (one per test session, so one browser trusts every hub the session starts)."""

    def __init__(self, folder: Path, identity: Identity) -> None:
        self.folder = folder
        self.identity = identity
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hub", daemon=True)
        self.thread.start()
        self.stack = AsyncExitStack()
        self.home: HubHome | None = None
        self.server: HubServer | None = None
        self.api: HubApi | None = None
        self.admin = ""
        self.port = 0
        self.agents: list[AgentProcess] = []
        self.workers: dict[str, str] = {}  # name → Workers-N

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_BOUND) -> T:
        """Runs ``coroutine`` on the hub's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def url(self) -> str:
        assert self.api is not None, "the hub is not started"
        return self.api.url

    def start(self) -> WebHub:
        self.run(self._start())
        return self

    async def _start(self) -> None:
        home = create_home(self.folder / "hub").with_settings(builtin_worker=False)
        save_identity(home.identity_path, self.identity)
        self.home = home
        await self._serve("127.0.0.1:0")
        self.admin = await new_key(home, "admin", Permission.CONFIGURE_SERVER)
        connector = aiohttp.TCPConnector(ssl=pinned(home))
        session = await self.stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        assert self.server is not None
        self.api = HubApi(str(self.server.url), session, self.admin)

    async def _serve(self, listen: str) -> None:
        assert self.home is not None
        self.server = HubServer(self.home, __version__)
        url = await self.server.start(listen, polling_port=0)
        self.port = int(url.rstrip("/").rsplit(":", 1)[1])

    def stop_server(self) -> None:
        """Stops the hub (the page's requests are refused), keeping its home."""
        assert self.server is not None
        self.run(self.server.stop())

    def restart_server(self) -> None:
        """Serves the same home again at the same address."""
        self.run(self._serve(f"127.0.0.1:{self.port}"))

    def key(self, name: str, permission: Permission = Permission.CONFIGURE_SERVER) -> str:
        assert self.home is not None
        return self.run(new_key(self.home, name, permission))

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """(status, JSON body) of an API request with the admin key."""
        assert self.api is not None
        return self.run(self.api.request(method, path, **kwargs))

    def get(self, path: str) -> Any:
        assert self.api is not None
        return self.run(self.api.get(path))

    def add_worker(self, name: str, *, polling: bool = False, pool: str = "WorkerPools-1") -> str:
        """A real agent (listening, or polling the hub) added to ``pool``; its Id,
        once it is Healthy."""
        assert self.api is not None
        assert self.server is not None
        port = self.server.polling_port if polling else None
        folder = self.folder / "agents"
        agent = self.run(add_worker(self.api, self.identity, folder, name, port, pool=pool))
        self.agents.append(agent)
        worker = next(w for w in self.get("/api/workers/all") if w["Name"] == name)
        self.workers[name] = worker["Id"]
        return str(worker["Id"])

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        if self.server is not None:
            self.run(self.server.stop())
        self.run(self.stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=CALL_BOUND)
        self.loop.close()


def sign_in(page: Page, hub: WebHub, key: str | None = None, path: str = "#/") -> None:
    """Opens the page at ``path`` and signs in with ``key`` (the admin's by default)."""
    page.goto(f"{hub.url}/app/{path}")
    page.locator("[data-test=signin-key]").fill(key or hub.admin)
    page.locator("[data-test=signin-submit]").click()
    expect(page.locator("[data-test=signout]")).to_be_visible()
