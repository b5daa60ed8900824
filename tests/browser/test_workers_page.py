"""The workers view in a real browser, against a hub with two real agents: health,
filters kept in the link, check health now, disable/enable, delete after a
confirmation, a ReadOnly key that sees no action and is refused by the hub."""

from __future__ import annotations

import re

from playwright.sync_api import Dialog, Locator, Page, expect

from agent.hub.keys import Permission
from tests.browser.webhub import WebHub, sign_in
from tests.integration.hub.tasks_helpers import finished

HOSTILE = "<img src=x onerror=alert(1)>"


def row(page: Page, name: str) -> Locator:
    return page.locator(f"[data-test=worker-row][data-name='{name}']")


def fake_worker(hub: WebHub, name: str) -> str:
    """A listening worker no agent answers for (to delete, or to name strangely)."""
    status, worker = hub.call(
        "POST",
        "/api/workers",
        json={
            "Name": name,
            "Thumbprint": "AB" * 20,
            "WorkerPoolIds": ["WorkerPools-1"],
            "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://127.0.0.1:9/"},
        },
    )
    assert status == 201, worker
    return str(worker["Id"])


def test_two_real_workers_show_healthy_with_how_they_connect(page: Page, web_hub: WebHub) -> None:
    sign_in(page, web_hub, path="#/workers")
    version = web_hub.get("/api")["Version"]
    expect(page.locator("[data-test=hub-version]")).to_have_text(f"v{version}")
    for name, style in (("web-listening", "Listening"), ("web-polling", "Polling")):
        expect(row(page, name).locator(".badge").first).to_have_attribute("data-status", "Healthy")
        expect(row(page, name)).to_contain_text(style)
        expect(row(page, name).locator("[data-test=last-checked]")).to_contain_text("checked")
    expect(page.locator("[data-test=count-Healthy] strong")).to_have_text("2")
    expect(page.locator("[data-test=count-running]")).to_contain_text("running")
    expect(page.locator("[data-test=worker-group]")).to_have_count(1)


def test_filters_are_kept_in_the_link(page: Page, web_hub: WebHub) -> None:
    sign_in(page, web_hub, path="#/workers")
    page.locator("[data-test=filter-name]").fill("poll")
    expect(page.locator("[data-test=worker-row]")).to_have_count(1)
    expect(row(page, "web-polling")).to_be_visible()
    page.locator("[data-test=filter-status]").select_option("Unhealthy")
    expect(page.locator("[data-test=worker-row]")).to_have_count(0)
    expect(page.get_by_text("No worker matches these filters.")).to_be_visible()
    link = page.url
    assert re.search(r"#/workers\?.*status=Unhealthy", link), link
    assert "name=poll" in link, link

    # the link in another tab (signed in there: the key is the tab's) keeps the filters
    other = page.context.new_page()
    sign_in(other, web_hub, path=link.split("/app/", 1)[1].replace("=Unhealthy", "=Healthy"))
    expect(other.locator("[data-test=filter-status]")).to_have_value("Healthy")
    expect(other.locator("[data-test=filter-name]")).to_have_value("poll")
    expect(other.locator("[data-test=worker-row]")).to_have_count(1)


def test_check_health_now_queues_a_health_task_and_links_to_it(page: Page, web_hub: WebHub) -> None:
    sign_in(page, web_hub, path="#/workers")
    row(page, "web-listening").locator("[data-test=action-health]").click()
    link = page.locator("[data-test=health-task]")
    expect(link).to_have_attribute("href", re.compile(r"^#/tasks/ServerTasks-\d+$"))
    task_id = str(link.get_attribute("href")).removeprefix("#/tasks/")
    task = web_hub.get(f"/api/tasks/{task_id}")
    assert task["Name"] == "Health", task
    assert task["Arguments"]["MachineIds"] == [web_hub.workers["web-listening"]], task


def test_disable_then_enable_a_worker(page: Page, web_hub: WebHub) -> None:
    worker_id = web_hub.workers["web-polling"]
    sign_in(page, web_hub, path="#/workers")
    row(page, "web-polling").locator("[data-test=action-disable]").click()
    expect(row(page, "web-polling").locator("[data-status=Disabled]")).to_be_visible()
    assert web_hub.get(f"/api/workers/{worker_id}")["IsDisabled"] is True
    row(page, "web-polling").locator("[data-test=action-enable]").click()
    expect(row(page, "web-polling").locator("[data-test=action-disable]")).to_be_visible()
    expect(row(page, "web-polling").locator("[data-status=Disabled]")).to_have_count(0)
    assert web_hub.get(f"/api/workers/{worker_id}")["IsDisabled"] is False


def _checked(hub: WebHub, worker_id: str) -> None:
    status, task = hub.call(
        "POST", "/api/tasks", json={"Name": "Health", "Arguments": {"MachineIds": [worker_id]}}
    )
    assert status == 201, task
    hub.run(finished(hub.api, task))  # type: ignore[arg-type]


def test_a_drained_worker_shows_a_draining_badge_until_it_resumes(
    page: Page, web_hub: WebHub
) -> None:
    [agent] = [a for a in web_hub.agents if a.cli.root.name == "web-listening"]
    worker_id = web_hub.workers["web-listening"]
    agent.cli.ok("drain", "--instance", "agent")
    try:
        _checked(web_hub, worker_id)
        sign_in(page, web_hub, path="#/workers")
        expect(row(page, "web-listening").locator("[data-status=Draining]")).to_be_visible()
        expect(row(page, "web-listening").locator("[data-test=status-summary]")).to_contain_text(
            "draining since"
        )
        expect(row(page, "web-polling").locator("[data-status=Draining]")).to_have_count(0)
    finally:
        agent.cli.ok("drain", "--instance", "agent", "--resume")
        _checked(web_hub, worker_id)
    page.reload()
    expect(row(page, "web-listening").locator("[data-status=Healthy]")).to_be_visible()
    expect(row(page, "web-listening").locator("[data-status=Draining]")).to_have_count(0)


def test_a_hostile_name_is_text_and_delete_asks_first(page: Page, web_hub: WebHub) -> None:
    worker_id = fake_worker(web_hub, HOSTILE)
    dialogs: list[str] = []

    def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    sign_in(page, web_hub, path="#/workers")
    hostile = page.locator("[data-test=worker-row]").filter(has_text=HOSTILE)
    expect(hostile.locator("[data-test=worker-name]")).to_have_text(HOSTILE)
    assert page.locator("main img").count() == 0

    hostile.locator("[data-test=action-delete]").click()
    expect(page.locator("[data-test=confirm]")).to_be_visible()
    page.locator("[data-test=confirm-cancel]").click()
    expect(page.locator("[data-test=confirm]")).to_have_count(0)
    assert web_hub.call("GET", f"/api/workers/{worker_id}")[0] == 200

    hostile.locator("[data-test=action-delete]").click()
    page.locator("[data-test=confirm-ok]").click()
    expect(hostile).to_have_count(0)
    assert web_hub.call("GET", f"/api/workers/{worker_id}")[0] == 404
    assert dialogs == [], "the page used a browser dialog (alert/confirm), or a name ran as HTML"


def test_a_read_only_key_sees_no_action_and_the_hub_refuses_it(page: Page, web_hub: WebHub) -> None:
    viewer = web_hub.key("viewer", Permission.READ_ONLY)
    sign_in(page, web_hub, viewer, path="#/workers")
    expect(page.locator("[data-test=permission]")).to_have_text("read only")
    for name in ("web-listening", "web-polling"):
        expect(row(page, name)).to_be_visible()
    assert page.locator(".action").count() == 0
    for view, ready in (("#/pools", "pool-row"), ("#/policies", "policy-row"), ("#/", "pool-card")):
        page.goto(f"{web_hub.url}/app/{view}")
        expect(page.locator(f"[data-test={ready}]").first).to_be_visible()
        assert page.locator(".action").count() == 0, view
    status = page.evaluate(
        """async ([key, id]) => (await fetch("/api/tasks", {method: "POST",
            headers: {"X-Octopus-ApiKey": key, "Content-Type": "application/json"},
            body: JSON.stringify({Name: "Health", Arguments: {MachineIds: [id]}})})).status""",
        [viewer, web_hub.workers["web-listening"]],
    )
    assert status == 403


def test_workers_fit_a_phone(phone: Page, web_hub: WebHub) -> None:
    sign_in(phone, web_hub, path="#/workers")
    expect(row(phone, "web-listening")).to_be_visible()
    expect(phone.locator("[data-test=worker-groups] thead").first).to_be_hidden()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
