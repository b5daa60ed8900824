"""The browser tests' parts: one headless Chromium per module (Debian's, nothing
downloaded) trusting the session's hub certificate by its key, a hub with two real
agents (one listening, one polling) per module, a fresh browser context per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agent.certs import Identity, generate_identity
from tests.browser.webhub import WebHub, chromium_path, launch

expect.set_options(timeout=30_000)  # a bound for a hang (loaded CI), not an expectation


@pytest.fixture(scope="session")
def hub_identity() -> Identity:
    """The certificate of every hub this session starts: the browser pins its key."""
    return generate_identity("Tentacle Hub")


@pytest.fixture(scope="module")
def browser(hub_identity: Identity) -> Iterator[Browser]:
    """Per module, not per session: Playwright's sync API runs an event loop in this
    thread while it is started, and the asyncio tests that xdist gives the same
    worker after these would fail ("cannot be called from a running event loop")."""
    try:
        chromium_path()
    except RuntimeError as missing:
        pytest.fail(str(missing), pytrace=False)
    with sync_playwright() as playwright:
        browser = launch(playwright, hub_identity)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def web_hub(tmp_path_factory: pytest.TempPathFactory, hub_identity: Identity) -> Iterator[WebHub]:
    """A hub with two real agents, Healthy: web-listening and web-polling."""
    hub = WebHub(tmp_path_factory.mktemp("webhub"), hub_identity).start()
    try:
        hub.add_worker("web-listening")
        hub.add_worker("web-polling", polling=True)
        yield hub
    finally:
        hub.close()


@pytest.fixture(scope="module")
def bare_hub(tmp_path_factory: pytest.TempPathFactory, hub_identity: Identity) -> Iterator[WebHub]:
    """A hub with no worker (cheap: for what needs no agent)."""
    hub = WebHub(tmp_path_factory.mktemp("barehub"), hub_identity).start()
    try:
        yield hub
    finally:
        hub.close()


def _page(browser: Browser, width: int, height: int) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (its own session storage) at a laptop's size."""
    yield from _page(browser, 1280, 800)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A fresh browser context at a phone's width."""
    yield from _page(browser, 390, 844)
