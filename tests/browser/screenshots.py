"""`make screenshots`: the page's main views, saved under docs/screenshots/.

Starts a hub with two real agents (one listening, one polling, in two pools) and
a finished task, signs in with Debian's headless Chromium and saves dashboard,
workers, pools, policies, the tasks list, a task with its log, the run form, a
refused policy form and (as root, with a throwaway sshd: tests/helpers/sshd.py) the
SSH worker form with its fetched fingerprint at 1280x800, and workers at a phone's
width.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from agent.certs import generate_identity
from tests.browser.webhub import WebHub, launch, sign_in
from tests.helpers.eventually import eventually
from tests.helpers.sshd import SshServer
from tests.integration.hub.tasks_helpers import finished

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCRIPT = 'echo "Building on $(hostname)"; for i in 1 2 3; do echo "step $i of 3"; done'


def submit(hub: WebHub, description: str, pool: str, script: str) -> str:
    status, task = hub.call(
        "POST",
        "/api/tasks",
        json={
            "Name": "AdHocScript",
            "Description": description,
            "Arguments": {"WorkerpoolId": pool, "ScriptBody": script, "Syntax": "Bash"},
        },
    )
    assert status == 201, task
    return str(task["Id"])


def prepare(hub: WebHub, release: Path) -> str:
    """Two pools, two Healthy workers, a task run and one running (until ``release``
    exists): what a person would see."""
    status, pool = hub.call(
        "POST",
        "/api/workerpools",
        json={"Name": "Build agents", "Description": "Linux machines that build and test"},
    )
    assert status == 201, pool
    hub.add_worker("build-01", pool=pool["Id"])
    hub.add_worker("edge-poller", polling=True)
    api = hub.api
    assert api is not None
    done = submit(hub, "Print the build host", pool["Id"], SCRIPT)
    hub.run(finished(api, {"Id": done}))
    waiting = f'echo "running the nightly tests"; until [ -e {release} ]; do sleep 0.1; done'
    running = submit(hub, "Nightly tests", "WorkerPools-1", waiting)

    async def executing() -> bool:
        return bool((await api.get(f"/api/tasks/{running}"))["State"] == "Executing")

    hub.run(eventually(executing, "the nightly tests started"))
    return done


def shoot(page: Page, hub: WebHub, hash_: str, ready: str, name: str) -> None:
    page.goto(f"{hub.url}/app/{hash_}")
    expect(page.locator(ready).first).to_be_visible()
    expect(page.locator("[data-test=counts] .chip").first).to_be_visible()
    page.mouse.move(0, 0)
    path = OUT / name
    page.screenshot(path=str(path), full_page=False)
    print(f"saved {path}")


def refused_form(page: Page, hub: WebHub) -> None:
    """A new policy's form with the hub's 422 beside it."""
    page.goto(f"{hub.url}/app/#/policies/new")
    page.locator("[data-test=field-Name]").fill("Quick checks")
    page.locator("[data-test=field-HealthCheckInterval]").fill("00:00:10")
    page.locator("[data-test=form-submit]").click()
    expect(page.locator("[data-test=form-error]")).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(OUT / "policy-form.png"))
    print(f"saved {OUT / 'policy-form.png'}")


def ssh_form(page: Page, hub: WebHub) -> None:
    """The SSH worker form, the fingerprint fetched from a throwaway sshd (root only)."""
    if os.geteuid() != 0:
        print("ssh-worker-form.png not made again: the throwaway sshd needs root")
        return
    sshd = SshServer().start()
    try:
        page.goto(f"{hub.url}/app/#/workers/new-ssh")
        page.locator("[data-test=field-Name]").fill("db-backup-01")
        page.locator("[data-test=field-Host]").fill(sshd.host)
        page.locator("[data-test=field-Port]").fill(str(sshd.port))
        page.locator("[data-test=field-Username]").fill("deploy")
        page.locator("[data-test=fetch-fingerprint]").click()
        expect(page.locator("[data-test=fingerprint-message]")).to_be_visible()
        page.locator("[data-test=login-key]").check()
        page.mouse.move(0, 0)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(OUT / "ssh-worker-form.png"), full_page=True)
        print(f"saved {OUT / 'ssh-worker-form.png'}")
    finally:
        sshd.close()


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    identity = generate_identity("Tentacle Hub")
    with tempfile.TemporaryDirectory(prefix="screenshots-") as folder:
        hub = WebHub(Path(folder), identity).start()
        try:
            release = Path(folder) / "release"
            task = prepare(hub, release)
            with sync_playwright() as playwright:
                browser = launch(playwright, identity)
                wide = browser.new_page(viewport={"width": 1280, "height": 800})
                sign_in(wide, hub)
                shoot(wide, hub, "#/", "[data-test=pool-card]", "dashboard.png")
                shoot(wide, hub, "#/workers", "[data-test=worker-row]", "workers.png")
                shoot(wide, hub, "#/pools", "[data-test=pool-row]", "pools.png")
                shoot(wide, hub, "#/policies", "[data-test=policy-row]", "policies.png")
                shoot(wide, hub, "#/tasks", "[data-test=task-row]", "tasks.png")
                shoot(wide, hub, f"#/tasks/{task}", "[data-test=log-line]", "task.png")
                shoot(wide, hub, "#/run", "[data-test=run-body]", "run.png")
                refused_form(wide, hub)
                ssh_form(wide, hub)
                phone = browser.new_page(viewport={"width": 390, "height": 844})
                sign_in(phone, hub)
                shoot(phone, hub, "#/workers", "[data-test=worker-row]", "workers-phone.png")
                browser.close()
            release.touch()
        finally:
            hub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
