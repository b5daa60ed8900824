"""What a careless or hostile person does to the page (found by the webtest helper):
a pasted key with a typographic character, a very long unbroken name on a phone, a
task link whose escape is broken, a connection that freezes, colour codes in a log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from agent.hub.api import task_stream
from tests.browser.test_tasks_page import WAIT_FOR, b64, done, submit
from tests.browser.test_workers_page import fake_worker
from tests.browser.webhub import WebHub, sign_in
from tests.helpers.forwarder import Forwarder

# a download address as a task's description and a worker's name: realistic, and one
# word a browser will not break
LONG = "https://artifacts.example.com/releases/2026/12/01/tentacle-1.2.3-linux-x64.tar.gz"


def test_a_key_with_a_typographic_character_is_refused_not_the_hub_unreachable(
    page: Page, bare_hub: WebHub
) -> None:
    page.goto(f"{bare_hub.url}/app/")
    page.locator("[data-test=signin-key]").fill("API-\u2026")  # the placeholder's "…"
    page.locator("[data-test=signin-submit]").click()
    error = page.locator("[data-test=signin-error]")
    expect(error).to_be_visible()
    assert "reach" not in (error.text_content() or ""), error.text_content()
    assert page.locator("[data-test=banner]").is_hidden(), "the hub is up: no banner"


def test_a_long_unbroken_name_does_not_scroll_a_phone_sideways(
    phone: Page, bare_hub: WebHub
) -> None:
    fake_worker(bare_hub, LONG)
    status, task = bare_hub.call(
        "POST",
        "/api/tasks",
        json={
            "Name": "Health",
            "Description": f"Check {LONG}",
            "Arguments": {"WorkerpoolId": "WorkerPools-1"},
        },
    )
    assert status == 201, task
    sign_in(phone, bare_hub)
    wide = {}
    for view, ready in (
        ("#/", "task-row"),
        (f"#/tasks/{task['Id']}", "task-facts"),
        ("#/run", "run-worker"),
    ):
        phone.goto(f"{bare_hub.url}/app/{view}")
        expect(phone.locator(f"[data-test={ready}]").first).to_be_visible()
        sizes = phone.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        if sizes[0] > sizes[1]:
            wide[view] = sizes
    assert wide == {}, f"(scrollWidth, clientWidth) of views wider than the phone: {wide}"


def test_a_task_link_with_a_broken_escape_says_it_is_not_a_task_id(
    page: Page, bare_hub: WebHub
) -> None:
    sign_in(page, bare_hub, path="#/tasks/%E0")
    error = page.locator("[data-test=page-error]")
    expect(error).to_be_visible()
    assert "is not a task id" in (error.text_content() or ""), error.text_content()


def test_every_view_leaves_the_console_clean(page: Page, bare_hub: WebHub) -> None:
    """No CSP violation, failed load or uncaught error in any view."""
    said: list[str] = []
    page.on("console", lambda m: m.type in ("error", "warning") and said.append(m.text))
    page.on("pageerror", lambda error: said.append(str(error)))
    sign_in(page, bare_hub)
    for view, ready in (
        ("#/workers", "worker-groups"),
        ("#/pools", "pool-row"),
        ("#/policies", "policy-row"),
        ("#/tasks", "state-filter"),
        ("#/run", "run-body"),
        ("#/pools/new", "form-submit"),
        ("#/policies/new", "form-submit"),
    ):
        page.goto(f"{bare_hub.url}/app/{view}")
        expect(page.locator(f"[data-test={ready}]").first).to_be_visible()
    assert said == []
    # the browser asks for an icon when it likes: the page names one, or the hub has one
    named = page.locator("link[rel~=icon]").count() > 0
    assert named or page.evaluate("fetch('/favicon.ico').then((r) => r.status)") == 200


WIDER = """() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > width + 1)
    .slice(-4)
    .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px: `
         + (e.textContent || "").slice(0, 80));
}"""


def wider(page: Page) -> list[str]:
    """The innermost elements reaching past the viewport's right edge (for the message)."""
    return list(page.evaluate(WIDER))


# Notes every stylesheet put in the page after it was parsed. Scripts run only once
# the parsed page's stylesheets have loaded, so those are applied before anything is
# shown; one added later (by a view, as it renders) may load after its elements are
# laid out: the output variable's long value was once laid out unwrapped, 581 px
# wide on a 390 px phone, before tasks.css arrived (in ~1 of 6 runs)
LATE_STYLESHEETS = """
window.__lateStylesheets = [];
new MutationObserver((records) => {
  if (document.readyState === "loading") return;
  for (const record of records)
    for (const node of record.addedNodes)
      if (node.nodeName === "LINK" && node.rel === "stylesheet")
        window.__lateStylesheets.push(node.href);
}).observe(document, { childList: true, subtree: true });
"""


def test_an_output_variable_holding_a_path_fits_a_phone(phone: Page, web_hub: WebHub) -> None:
    path = "/tmp/tentacle-demo.YsnMY1/config/listening/Applications/Acme.Shop/1.0.0"
    line = f"##octopus[setVariable name='{b64('InstalledTo')}' value='{b64(path)}']"
    task = done(web_hub, submit(web_hub, f'echo "{line}"'))
    assert task["State"] == "Success", task
    phone.add_init_script(LATE_STYLESHEETS)
    sign_in(phone, web_hub, path=f"#/tasks/{task['Id']}")
    expect(phone.locator("[data-test=output-variable]")).to_have_count(1)
    late = phone.evaluate("window.__lateStylesheets")
    assert late == [], f"stylesheets added after the page was parsed, maybe applied late: {late}"
    sizes = phone.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert sizes[0] <= sizes[1], f"(scrollWidth, clientWidth) = {sizes}: {wider(phone)}"


def test_a_frozen_stream_is_noticed_and_the_log_comes_back(
    page: Page, web_hub: WebHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen connection (no reset: a laptop's sleep, a NAT that forgot it) is noticed
    by the page's watchdog on the hub's keepalives, which the hub's answer says are
    sent every X-Keepalive-Seconds (made short here), and the stream is asked again."""
    monkeypatch.setattr(task_stream, "KEEPALIVE", 1.0)
    forwarder = Forwarder(web_hub.port, agent_dials=False)  # the browser dials the hub
    port = web_hub.run(forwarder.start())
    go = tmp_path / "go"
    try:
        task = submit(web_hub, "echo started\n" + WAIT_FOR.format(path=go) + "echo after\n")
        page.goto(f"https://127.0.0.1:{port}/app/")
        page.locator("[data-test=signin-key]").fill(web_hub.admin)
        page.locator("[data-test=signin-submit]").click()
        expect(page.locator("[data-test=signout]")).to_be_visible()
        page.goto(f"https://127.0.0.1:{port}/app/#/tasks/{task['Id']}")
        lines = page.locator("[data-test=step] [data-test=log-line] .log-text")
        expect(lines.filter(has_text="started")).to_have_count(1)

        async def freeze() -> None:
            forwarder.arm("freeze")  # at the hub's next bytes, on every open connection
            await asyncio.wait_for(forwarder.fired.wait(), 60)

        web_hub.run(freeze())
        go.write_text("go")
        assert done(web_hub, task)["State"] == "Success"
        # bound: twice the keepalive and the page's 2 s slack for each of the browser's
        # frozen idle connections a reconnect may meet (up to 6), and room for a loaded
        # machine
        expect(lines.filter(has_text="after")).to_have_count(1, timeout=60_000)
    finally:
        web_hub.run(forwarder.stop())


def test_ansi_colour_codes_do_not_show_as_characters(page: Page, web_hub: WebHub) -> None:
    task = done(web_hub, submit(web_hub, r"printf '\033[1;31mred\033[0m plain\n'"))
    sign_in(page, web_hub, path=f"#/tasks/{task['Id']}")
    line = page.locator("[data-test=step] [data-test=log-line] .log-text").filter(has_text="plain")
    expect(line).to_have_count(1)
    assert line.text_content() == "red plain"
