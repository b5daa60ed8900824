"""The tasks pages in a real browser against a real hub with real agents: a script run
from the form whose log arrives while it runs, a cancel from the task's page that ends
the script's process, output variables (a sensitive one masked), a log line that looks
like HTML shown as text, the hub's refusal beside the form, an unknown task id, the
list's state filter, a rerun, and a ReadOnly key that sees a task but cannot act."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from playwright.sync_api import Page, expect

from agent.hub.keys import Permission
from tests.browser.webhub import WebHub, sign_in
from tests.helpers.eventually import eventually
from tests.integration.hub.tasks_helpers import finished

# a script's wait for a file the test creates: bounded (2 minutes), so a failed test
# leaves no script behind for long
WAIT_FOR = """i=0
until [ -e {path} ]; do i=$((i+1)); [ $i -gt 2400 ] && exit 9; sleep 0.05; done
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def submit(hub: WebHub, body: str) -> dict[str, Any]:
    """An AdHocScript task on the default pool, queued through the API."""
    status, task = hub.call(
        "POST", "/api/tasks", json={"Name": "AdHocScript", "Arguments": {"ScriptBody": body}}
    )
    assert status == 201, task
    return task  # type: ignore[no-any-return]


def done(hub: WebHub, task: dict[str, Any]) -> dict[str, Any]:
    assert hub.api is not None
    return hub.run(finished(hub.api, task))


def log_lines(page: Page) -> Any:
    return page.locator("[data-test=step] [data-test=log-line] .log-text")


def state_badge(page: Page) -> Any:
    return page.locator("[data-test=task-facts] .badge").first


def test_a_script_run_from_the_form_shows_its_log_while_it_runs(
    page: Page, web_hub: WebHub, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    sign_in(page, web_hub, path="#/run")
    script = (
        "echo first-line; seq 1 60\n" + WAIT_FOR.format(path=go) + "echo second-line; seq 61 99\n"
    )
    page.locator("[data-test=run-body]").fill(script)
    page.locator("[data-test=run-submit]").click()
    expect(page).to_have_url(re.compile(r"#/tasks/ServerTasks-\d+$"))
    task_id = page.url.rsplit("/", 1)[1]
    expect(log_lines(page).filter(has_text="first-line")).to_have_count(1)
    expect(log_lines(page).filter(has_text=re.compile("^60$"))).to_have_count(1)
    # the page shows the first lines while the script waits: it has not ended
    assert web_hub.get(f"/api/tasks/{task_id}")["State"] == "Executing"
    expect(state_badge(page)).to_have_attribute("data-status", "Executing")
    log = page.locator("[data-test=step] [data-test=log]")
    # the log followed its end; scrolled up, it stays where the person put it
    assert log.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight < 8")
    assert log.evaluate("el => el.scrollHeight > el.clientHeight")
    log.evaluate("el => { el.scrollTop = 0; }")
    go.touch()
    expect(log_lines(page).filter(has_text="second-line")).to_have_count(1)
    expect(log_lines(page).filter(has_text=re.compile("^99$"))).to_have_count(1)
    assert log.evaluate("el => el.scrollTop") == 0
    expect(state_badge(page)).to_have_attribute("data-status", "Success")
    expect(page.locator("[data-test=live-status]")).to_have_attribute("data-state", "ended")
    lines = ["first-line", *map(str, range(1, 61)), "second-line", *map(str, range(61, 100))]
    assert log_lines(page).all_text_contents() == lines
    # pushed by the hub's event stream, not looked for again and again
    details = [url for url in asked if f"/api/tasks/{task_id}/details" in url]
    assert any("/details/stream?since=" in url for url in details), details
    assert len(details) <= 3, details  # the first look, its stream, one reconnect at most
    expect(page.locator("[data-test=step] .step-head")).to_contain_text(
        re.compile("web-listening|web-polling")
    )


def test_a_running_task_is_canceled_from_its_page_and_its_script_ends(
    page: Page, web_hub: WebHub, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    never = tmp_path / "never"
    task = submit(web_hub, f"echo $$ > {pid_file}\necho waiting\n" + WAIT_FOR.format(path=never))
    sign_in(page, web_hub, path=f"#/tasks/{task['Id']}")
    expect(log_lines(page).filter(has_text="waiting")).to_have_count(1)
    pid = int(pid_file.read_text())
    page.locator("[data-test=action-cancel]").click()
    page.locator("[data-test=confirm-ok]").click()
    expect(state_badge(page)).to_have_attribute("data-status", "Canceled")
    expect(page.locator("[data-test=action-cancel]")).to_have_count(0)
    assert web_hub.get(f"/api/tasks/{task['Id']}")["State"] == "Canceled"

    def ended() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    web_hub.run(eventually(ended, f"the canceled script (pid {pid}) ended"))


def test_leaving_a_running_tasks_page_closes_its_stream(
    page: Page, web_hub: WebHub, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    task = submit(web_hub, "echo still-running\n" + WAIT_FOR.format(path=go))
    try:
        sign_in(page, web_hub, path=f"#/tasks/{task['Id']}")
        expect(log_lines(page).filter(has_text="still-running")).to_have_count(1)
        stream = f"/api/tasks/{task['Id']}/details/stream"
        with page.expect_event("requestfailed", lambda r: stream in r.url) as closed:
            page.locator("nav a[href='#/tasks']").click()
        assert closed.value.failure is not None
        expect(page.locator("[data-test=task-row]").first).to_be_visible()
    finally:
        go.touch()
    assert done(web_hub, task)["State"] == "Success"


def test_output_variables_show_with_the_sensitive_one_masked_and_html_as_text(
    page: Page, web_hub: WebHub
) -> None:
    hostile = '<img src=x onerror="window.__injected = 1">'
    body = (  # the service messages the executor reads from a step's output
        f"echo \"##octopus[setVariable name='{b64('Greeting')}' value='{b64('hi there')}']\"\n"
        f"echo \"##octopus[setVariable name='{b64('Password')}' value='{b64('s3cr3t-value')}' "
        f"sensitive='{b64('True')}']\"\n"
        f"echo '{hostile}'\n"
    )
    task = submit(web_hub, body)
    assert done(web_hub, task)["State"] == "Success"
    sign_in(page, web_hub, path=f"#/tasks/{task['Id']}")
    greeting = page.locator("[data-test=output-variable][data-name=Greeting]")
    expect(greeting).to_contain_text("hi there")
    password = page.locator("[data-test=output-variable][data-name=Password]")
    expect(password).to_contain_text("********")
    expect(password).to_contain_text("sensitive")
    expect(page.locator("body")).not_to_contain_text("s3cr3t-value")
    # the line is the characters the script printed, not an element of the page
    expect(log_lines(page).filter(has_text="onerror")).to_have_text(hostile)
    assert page.locator("[data-test=log] img").count() == 0
    assert page.evaluate("window.__injected") is None
    expect(page.locator("[data-test=live-status]")).to_have_attribute("data-state", "ended")


def test_an_empty_script_is_refused_with_the_hubs_message_beside_the_form(
    page: Page, web_hub: WebHub
) -> None:
    sign_in(page, web_hub, path="#/run")
    page.locator("[data-test=run-parallelism]").fill("0")
    page.locator("[data-test=run-submit]").click()
    errors = page.locator("[data-test=run-errors]")
    expect(errors).to_contain_text("Arguments.ScriptBody is required")
    expect(errors).to_contain_text("Arguments.MaxParallelism must be an integer from 1")
    expect(errors).to_contain_text("422")
    assert page.url.endswith("#/run")  # still on the form, what was typed kept
    expect(page.locator("[data-test=run-parallelism]")).to_have_value("0")


def test_an_unknown_task_id_says_so(page: Page, web_hub: WebHub) -> None:
    sign_in(page, web_hub, path="#/tasks/ServerTasks-99999")
    expect(page.locator("[data-test=page-error]")).to_contain_text(
        "There is no task ServerTasks-99999"
    )
    page.goto(f"{web_hub.url}/app/#/tasks/no-such-thing")
    expect(page.locator("[data-test=page-error]")).to_contain_text(
        '"no-such-thing" is not a task id'
    )


def test_the_list_filters_by_state_and_a_task_runs_again(page: Page, web_hub: WebHub) -> None:
    failing = submit(web_hub, "echo failing on purpose\nexit 4")
    assert done(web_hub, failing)["State"] == "Failed"
    sign_in(page, web_hub, path="#/tasks?state=Failed")
    rows = page.locator("[data-test=task-row]")
    expect(rows.filter(has_text=failing["Id"])).to_have_count(1)
    states = rows.evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert set(states) == {"Failed"}
    rows.filter(has_text=failing["Id"]).get_by_role("link").click()
    expect(page.locator("[data-test=task-error]")).to_contain_text("exited with code 4")
    page.locator("[data-test=action-rerun]").click()
    expect(page).not_to_have_url(re.compile(f"{failing['Id']}$"))
    expect(page).to_have_url(re.compile(r"#/tasks/ServerTasks-\d+$"))
    expect(state_badge(page)).to_have_attribute("data-status", "Failed")
    expect(log_lines(page).filter(has_text="failing on purpose")).to_have_count(1)


DEPLOY_SH = """\
echo "report of $(get_octopusvariable Octopus.Machine.Name)" > report.txt
new_octopusartifact "$PWD/report.txt" "report.txt"
set_octopusvariable Deployed yes
"""


def deploy_package(hub: WebHub) -> dict[str, Any]:
    """A Deploy task of a package whose Deploy.sh reports an artifact, on web-listening."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Deploy.sh", DEPLOY_SH)
    form = aiohttp.FormData()
    form.add_field("fileToUpload", buffer.getvalue(), filename="Report.Web.1.0.0.zip")
    status, package = hub.call("POST", "/api/packages/raw", data=form)
    assert status == 201, package
    arguments = {
        "PackageId": "Report.Web",
        "PackageVersion": "1.0.0",
        "MachineIds": [hub.workers["web-listening"]],
    }
    status, task = hub.call("POST", "/api/tasks", json={"Name": "Deploy", "Arguments": arguments})
    assert status == 201, task
    return task  # type: ignore[no-any-return]


def test_an_artifact_is_listed_and_downloads_with_the_key(page: Page, web_hub: WebHub) -> None:
    task = deploy_package(web_hub)
    assert done(web_hub, task)["State"] == "Success"
    sign_in(page, web_hub, path=f"#/tasks/{task['Id']}")
    expect(page.locator("[data-test=output-variable][data-name=Deployed]")).to_contain_text("yes")
    artifact = page.locator("[data-test=artifact]")
    expect(artifact).to_contain_text("report.txt")
    expect(artifact).to_contain_text("web-listening")
    with page.expect_download() as fetched:
        artifact.locator("[data-test=artifact-download]").click()
    download = fetched.value
    assert download.suggested_filename == "report.txt"
    assert Path(download.path()).read_text() == "report of web-listening\n"


@pytest.fixture(scope="module")
def read_only_key(web_hub: WebHub) -> str:
    return web_hub.key("watcher", Permission.READ_ONLY)


def test_a_read_only_key_sees_a_task_but_no_action(
    page: Page, web_hub: WebHub, read_only_key: str
) -> None:
    task = submit(web_hub, "echo looked-at")
    assert done(web_hub, task)["State"] == "Success"
    sign_in(page, web_hub, read_only_key, path=f"#/tasks/{task['Id']}")
    expect(log_lines(page).filter(has_text="looked-at")).to_have_count(1)
    expect(state_badge(page)).to_have_attribute("data-status", "Success")
    assert page.locator(".action").count() == 0
    # what the buttons would ask, asked from the page with this key, is forbidden
    statuses = page.evaluate(
        """async ([key, id]) => Promise.all([`/api/tasks/${id}/cancel`, `/api/tasks/rerun/${id}`]
            .map(async (path) => (await fetch(path, {method: "POST",
                headers: {"X-Octopus-ApiKey": key}})).status))""",
        [read_only_key, task["Id"]],
    )
    assert statuses == [403, 403]
    page.goto(f"{web_hub.url}/app/#/tasks")
    expect(page.locator("[data-test=task-row]").first).to_be_visible()
    assert page.locator(".action").count() == 0
    page.goto(f"{web_hub.url}/app/#/run")
    expect(page.locator("main")).to_contain_text("can look but not run scripts")
    assert page.locator("[data-test=run-submit]").count() == 0
    assert page.locator(".action").count() == 0


def test_the_log_goes_on_after_the_hub_comes_back(
    page: Page, web_hub: WebHub, tmp_path: Path
) -> None:
    """Last in the module: the restarted hub serves its polling port anew (the listening
    worker runs the script)."""
    go = tmp_path / "go"
    script = "echo before-the-drop\n" + WAIT_FOR.format(path=go) + "echo after-the-drop\n"
    status, task = web_hub.call(
        "POST",
        "/api/tasks",
        json={
            "Name": "AdHocScript",
            "Arguments": {"ScriptBody": script, "MachineIds": [web_hub.workers["web-listening"]]},
        },
    )
    assert status == 201, task
    sign_in(page, web_hub, path=f"#/tasks/{task['Id']}")
    expect(log_lines(page).filter(has_text="before-the-drop")).to_have_count(1)
    live = page.locator("[data-test=live-status]")
    expect(live).to_have_attribute("data-state", "live")
    web_hub.stop_server()
    expect(live).to_have_attribute("data-state", "reconnecting")
    web_hub.restart_server()
    go.touch()
    expect(log_lines(page).filter(has_text="after-the-drop")).to_have_count(1)
    expect(state_badge(page)).to_have_attribute("data-status", "Success")
    # each line once: the reconnect asked from its cursor
    assert log_lines(page).all_text_contents() == ["before-the-drop", "after-the-drop"]
