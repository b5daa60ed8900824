"""The page's shell in a real browser: sign-in, the header's counts, the banner."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.webhub import WebHub, sign_in


def test_sign_in_shows_the_hub_version_and_two_healthy_workers(page: Page, web_hub: WebHub) -> None:
    sign_in(page, web_hub)
    version = web_hub.get("/api")["Version"]
    expect(page.locator("[data-test=hub-version]")).to_have_text(f"v{version}")
    expect(page.locator("[data-test=count-Healthy] strong")).to_have_text("2")
