"""The page's shell in a real browser: workers that join while it is open, a bad key
refused with the hub's message, signing out, a page that does not exist, and the
banner while the hub is down."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.webhub import WebHub, sign_in

UNKNOWN_KEY = "API-" + "Z" * 26


def test_two_workers_joining_turn_healthy_on_the_open_page(page: Page, bare_hub: WebHub) -> None:
    sign_in(page, bare_hub, path="#/workers")
    expect(page.get_by_text("No worker is registered yet.")).to_be_visible()
    expect(page.locator("[data-test=count-Healthy] strong")).to_have_text("0")
    bare_hub.add_worker("late-listening")
    bare_hub.add_worker("late-polling", polling=True)
    for name in ("late-listening", "late-polling"):  # no reload: the page looks again
        badge = page.locator(f"[data-test=worker-row][data-name='{name}'] .badge").first
        expect(badge).to_have_attribute("data-status", "Healthy")
    expect(page.locator("[data-test=count-Healthy] strong")).to_have_text("2")


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


def test_the_small_helpers_in_the_browser(page: Page, bare_hub: WebHub) -> None:
    page.goto(f"{bare_hub.url}/app/")
    expect(page.locator("[data-test=signin-key]")).to_be_visible()
    results = page.evaluate(
        """async () => {
            const dom = await import("/app/dom.js");
            const api = await import("/app/api.js");
            const policies = await import("/app/policies.js");
            const at = new Date("2026-01-01T12:00:00Z");
            return {
                ago: [5, 90, 7200, 3 * 86400].map(
                    (s) => dom.ago(new Date(at.getTime() - s * 1000), at)),
                joined: api.errorText({ErrorMessage: "There was a problem.",
                    Errors: ["Name is required", "There was a problem."]}, "x"),
                alone: api.errorText(
                    {ErrorMessage: "no such worker", Errors: ["no such worker"]}, "x"),
                none: api.errorText(null, "HTTP 500"),
                hash: dom.hashWith("#/workers", {pool: "WorkerPools-1", status: "", name: "a b"}),
                read: dom.hashQuery("#/workers?name=a+b").get("name"),
                spans: ["01:00:00", "1.02:03:00", "00:00:30", "soon"].map(policies.span),
                text: dom.h("p", {}, "<b>x</b>").innerHTML,
            };
        }"""
    )
    assert results == {
        "ago": ["just now", "1 minute ago", "2 hours ago", "3 days ago"],
        "joined": "There was a problem. Name is required",
        "alone": "no such worker",
        "none": "HTTP 500",
        "hash": "#/workers?pool=WorkerPools-1&name=a+b",
        "read": "a b",
        "spans": ["1 hour", "1 day 2 hours 3 minutes", "30 seconds", "soon"],
        "text": "&lt;b&gt;x&lt;/b&gt;",
    }
