"""The page's shell in a real browser: a bad key refused with the hub's message,
signing out, a page that does not exist, and the banner while the hub is down."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.webhub import WebHub, sign_in

UNKNOWN_KEY = "API-" + "Z" * 26


def test_a_bad_key_is_refused_with_the_hubs_message(page: Page, bare_hub: WebHub) -> None:
    status, refusal = bare_hub.call("GET", "/api/workers/all", key=UNKNOWN_KEY)
    assert status == 401, refusal
    page.goto(f"{bare_hub.url}/app/")
    page.locator("[data-test=signin-key]").fill(UNKNOWN_KEY)
    page.locator("[data-test=signin-submit]").click()
    error = page.locator("[data-test=signin-error]")
    expect(error).to_contain_text(refusal["ErrorMessage"])
    expect(error).to_contain_text("refused")
    assert page.evaluate("sessionStorage.length") == 0


def test_the_key_lasts_the_tab_and_signing_out_forgets_it(page: Page, bare_hub: WebHub) -> None:
    sign_in(page, bare_hub)
    page.reload()
    expect(page.locator("[data-test=signout]")).to_be_visible()
    page.goto(f"{bare_hub.url}/app/#/nowhere")
    expect(page.locator("[data-test=page-error]")).to_contain_text("There is no page #/nowhere")
    page.locator("[data-test=signout]").click()
    expect(page.locator("[data-test=signin-key]")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_banner_while_the_hub_cannot_be_reached(page: Page, bare_hub: WebHub) -> None:
    sign_in(page, bare_hub, path="#/workers")
    banner = page.locator("[data-test=banner]")
    expect(banner).to_be_hidden()
    bare_hub.stop_server()
    try:
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Cannot reach the hub")
    finally:
        bare_hub.restart_server()
    expect(banner).to_be_hidden()
