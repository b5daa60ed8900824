"""Deploy tasks through a real hub on real agents (listening and polling): a package
with a templated config installed on two workers by the executor, sent once per
content hash, output variables and artifacts collected, sensitive values kept out of
every answer, the database, the log and the workers' disks; a failing Deploy.sh, bad
arguments, and a connection cut in the middle of the package's upload."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import signal
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import sqlalchemy as sa

from agent import __version__
from agent.certs import generate_identity
from agent.client import ChannelSettings
from agent.hub.adhoc import BUILTIN_NAME
from agent.hub.server import HubServer
from agent.hub.store import tables as t
from agent.protocol.calls import IncomingCall, Reply
from agent.scripts.manager import ScriptManager, ScriptSettings
from agent.services.capabilities import capabilities_methods
from agent.services.router import Router
from agent.services.scripts import ScriptService
from agent.transport.listener import Listener
from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually
from tests.helpers.forwarder import Forwarder
from tests.helpers.hub import HubApi, RunningHub, pinned
from tests.integration.hub.tasks_helpers import add_worker, finished

SECRET = "Sup3r-S3cret-Passw0rd-71c9"
DEPLOY_SH = """\
set -e
machine=$(get_octopusvariable Octopus.Machine.Name)
echo "deploying to $machine with $(get_octopusvariable DbPassword)"
printf '%s' "$(get_octopusvariable DbPassword)" | sha256sum | cut -c1-64 > secret.sha
if [ "$(get_octopusvariable FailHere)" = "yes" ]; then
  fail_step "the database on $machine is not reachable"
fi
marker=$(get_octopusvariable StartedMarker)
if [ -n "$marker" ]; then
  echo started >> "$marker"
  i=0
  until [ -e "$marker.release" ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 9; sleep 0.05; done
fi
echo "report of $machine" > report.txt
new_octopusartifact "$PWD/report.txt" "report-$machine.txt"
set_octopusvariable Deployed "yes-$machine"
"""


def package_bytes(padding: int = 0) -> bytes:
    """A real package: a templated config and Deploy.sh (and ``padding`` random bytes,
    stored as they are, to make its upload take many frames)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.config", "port=#{Port}\nname=#{Octopus.Machine.Name}\n")
        archive.writestr("Deploy.sh", DEPLOY_SH)
        if padding:
            archive.writestr("blob.bin", os.urandom(padding), zipfile.ZIP_STORED)
    return buffer.getvalue()


async def upload(hub: RunningHub, name: str, data: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("fileToUpload", data, filename=name)
    status, body = await hub.api.request("POST", "/api/packages/raw", data=form)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def variables(**extra: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = [
        {"Name": "Port", "Value": "8080", "IsSensitive": False},
        {"Name": "DbPassword", "Value": SECRET, "IsSensitive": True},
        {"Name": "Octopus.Action.SubstituteInFiles.TargetFiles", "Value": "app.config"},
        {"Name": "Octopus.Action.EnabledFeatures", "Value": "Octopus.Features.SubstituteInFiles"},
    ]
    return listed + [{"Name": k, "Value": v, "IsSensitive": False} for k, v in extra.items()]


async def deploy(hub: RunningHub, **arguments: Any) -> dict[str, Any]:
    body = {
        "PackageId": "Acme.Web",
        "PackageVersion": "1.0.0",
        "Variables": variables(),
        "TargetAllWorkers": True,
        **arguments,
    }
    status, task = await hub.api.request(
        "POST", "/api/tasks", json={"Name": "Deploy", "Arguments": body}
    )
    assert status == 201, task
    return task  # type: ignore[no-any-return]


def steps_of(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["Worker"]: step for step in details["ActivityLogs"][0]["Children"]}


def outputs(step: dict[str, Any]) -> dict[str, str]:
    return {v["Name"]: v["Value"] for v in step["OutputVariables"]}


def cache_file(agent: AgentProcess, package: dict[str, Any]) -> Path:
    return agent.home / "Files" / "packages" / f"{package['Hash']}.zip"


def files_holding(root: Path, needle: bytes) -> list[Path]:
    """Every file under ``root`` whose bytes hold ``needle``."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                    found.append(path)
            except FileNotFoundError:  # a file replaced or removed meanwhile (state, scratch)
                continue
    return found


def check_installed(
    step: dict[str, Any], name: str, agent: AgentProcess, package: dict[str, Any]
) -> None:
    """The step's installation on its worker: config substituted, the secret received."""
    assert step["Status"] == "Success"
    values = outputs(step)
    assert values["Deployed"] == f"yes-{name}"
    folder = Path(values["Package.InstallationDirectoryPath"])
    assert folder.is_relative_to(agent.home), folder
    # the templated config, substituted on the worker
    assert (folder / "app.config").read_text() == f"port=8080\nname={name}\n"
    # the script had the sensitive value (its hash proves it) ...
    assert (folder / "secret.sha").read_text().strip() == hashlib.sha256(
        SECRET.encode()
    ).hexdigest()
    texts = [e["MessageText"] for e in step["LogElements"]]
    assert f"deploying to {name} with ********" in texts
    assert any("Sending Acme.Web 1.0.0" in text for text in texts)
    cached = cache_file(agent, package).read_bytes()
    assert hashlib.sha256(cached).hexdigest() == package["Hash"]


async def check_artifacts(hub: RunningHub, task: dict[str, Any]) -> None:
    """Each worker's report, fetched into the hub and downloadable."""
    listed = await hub.api.get(f"/api/artifacts?regarding={task['Id']}")
    assert listed["TotalResults"] == 2
    by_name = {item["Filename"]: item for item in listed["Items"]}
    assert sorted(by_name) == ["report-web-1.txt", "report-web-2.txt"]
    for name in ("web-1", "web-2"):
        item = by_name[f"report-{name}.txt"]
        assert (item["Source"], item["ServerTaskId"]) == (name, task["Id"])
        one = await hub.api.get(f"/api/artifacts/{item['Id']}")
        assert one["Links"]["Content"].endswith(f"/artifacts/{item['Id']}/content")
        async with hub.api.session.get(
            f"{hub.api.url}/api/artifacts/{item['Id']}/content",
            headers={"X-Octopus-ApiKey": str(hub.api.key)},
        ) as content:
            assert content.status == 200
            assert await content.read() == f"report of {name}\n".encode()


async def check_database(hub: RunningHub) -> None:
    """No stored row holds the secret (on both databases), and on SQLite no byte of
    the database's files (the WAL included) nor of the hub's home does."""
    assert hub.server.store is not None
    async with hub.server.store.connect() as conn:
        for table in t.metadata.sorted_tables:
            rows = (await conn.execute(sa.select(table))).all()
            assert SECRET not in repr([tuple(row) for row in rows]), table.name
    database = hub.home.settings.database
    if database.startswith("sqlite:///"):
        path = Path(database.removeprefix("sqlite:///"))
        for one in (path, path.with_name(path.name + "-wal")):
            assert not one.exists() or SECRET.encode() not in one.read_bytes(), one
    assert files_holding(hub.home.path, SECRET.encode()) == []


def released(home: Path) -> bool:
    """Whether every script workspace of the agent in ``home`` is gone."""
    return not [p for p in (home / "Work").iterdir() if not p.name.startswith(".")]


async def answers_of(hub: RunningHub, task: dict[str, Any]) -> str:
    """Everything the API says about the task, as text."""
    paths = [
        f"/api/tasks/{task['Id']}",
        f"/api/tasks/{task['Id']}/details",
        f"/api/tasks/{task['Id']}/state",
        "/api/tasks",
        "/api/tasks/all",
        "/api/events",
        f"/api/artifacts?regarding={task['Id']}",
    ]
    texts = [json.dumps(await hub.api.get(path)) for path in paths]
    async with hub.api.session.get(
        f"{hub.api.url}/api/tasks/{task['Id']}/raw", headers={"X-Octopus-ApiKey": str(hub.api.key)}
    ) as raw:
        texts.append(await raw.text())
    return "\n".join(texts)


async def test_a_package_is_deployed_to_two_workers_sent_once_and_its_secrets_kept(
    hub: RunningHub, tmp_path: Path
) -> None:
    web1 = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    web2 = await add_worker(
        hub.api, hub.home.identity(), tmp_path, "web-2", hub.server.polling_port
    )
    try:
        package = await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
        task = await deploy(hub)
        assert task["Description"] == "Deploy Acme.Web 1.0.0 to every worker of the default pool"
        shown = {v["Name"]: v for v in task["Arguments"]["Variables"]}
        assert shown["DbPassword"] == {
            "Name": "DbPassword",
            "Value": "********",
            "IsSensitive": True,
        }
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")

        details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
        steps = steps_of(details)
        assert sorted(steps) == ["web-1", "web-2"]
        for name, agent in (("web-1", web1), ("web-2", web2)):
            check_installed(steps[name], name, agent, package)

        # ... which is nowhere in clear: not in any answer, the database, the workers' disks
        assert SECRET not in await answers_of(hub, task)
        assert "SealedValue" not in await answers_of(hub, task)
        for agent in (web1, web2):
            assert files_holding(agent.home, SECRET.encode()) == []
            await eventually(functools.partial(released, agent.home), "workspaces released")
        await check_database(hub)
        assert [p for p in (hub.home.path / "Deploy").rglob("*") if p.is_file()] == [] or not any(
            (hub.home.path / "Deploy").iterdir()
        )

        await check_artifacts(hub, task)

        # a rerun (its sensitive value carried over) finds the package in both caches
        before = {agent.home: cache_file(agent, package).stat() for agent in (web1, web2)}
        status, rerun = await hub.api.request("POST", f"/api/tasks/rerun/{task['Id']}")
        assert status == 201, rerun
        assert SECRET not in json.dumps(rerun)
        again = await finished(hub.api, rerun)
        assert (again["State"], again["ErrorMessage"]) == ("Success", "")
        for agent in (web1, web2):
            after = cache_file(agent, package).stat()
            assert (after.st_ino, after.st_mtime_ns) == (
                before[agent.home].st_ino,
                before[agent.home].st_mtime_ns,
            )
        rerun_steps = steps_of(await hub.api.get(f"/api/tasks/{rerun['Id']}/details"))
        for name, step in rerun_steps.items():
            texts = [e["MessageText"] for e in step["LogElements"]]
            assert any("in the package cache of " + name + " already" in x for x in texts)
            assert not any("Sending" in x for x in texts)
            folder = Path(outputs(step)["Package.InstallationDirectoryPath"])
            assert (folder / "secret.sha").read_text().strip() == hashlib.sha256(
                SECRET.encode()
            ).hexdigest()
        assert SECRET not in await answers_of(hub, rerun)
    finally:
        web1.stop()
        web2.stop()


async def test_a_failing_deploy_script_fails_the_task_with_its_message(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    try:
        await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
        task = await deploy(hub, Variables=variables(FailHere="yes"))
        done = await finished(hub.api, task)
        assert done["State"] == "Failed"
        assert done["ErrorMessage"] == (
            "web-1: deployment failed: Deploy.sh returned exit code 1: "
            "the database on web-1 is not reachable"
        )
        [step] = steps_of(await hub.api.get(f"/api/tasks/{task['Id']}/details")).values()
        assert step["Status"] == "Failed"
        assert "Tentacle.Deploy.FailureMessage" not in outputs(step)
        # it failed before its artifact: none
        assert (await hub.api.get(f"/api/artifacts?regarding={task['Id']}"))["TotalResults"] == 0
        assert SECRET not in await answers_of(hub, task)
        assert files_holding(agent.home, SECRET.encode()) == []
    finally:
        agent.stop()


async def test_bad_deploy_arguments_are_refused_naming_each(hub: RunningHub) -> None:
    await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({}, ["Arguments.PackageId is required", "Arguments.PackageVersion is required"]),
        (
            {"PackageId": "Acme.Web", "PackageVersion": "9.9.9"},
            ["there is no package Acme.Web 9.9.9 in this space's repository"],
        ),
        (
            {"PackageId": "Acme.Web", "PackageVersion": "1.0.0", "Variables": {"a": 1}},
            ["Arguments.Variables must be a list like"],
        ),
        (
            {
                "PackageId": "Acme.Web",
                "PackageVersion": "1.0.0",
                "Variables": [
                    {"Name": "A", "Value": 3},
                    {"Name": "a", "Value": "x"},
                    {"Name": "B", "Value": 5, "IsSensitive": True},
                    {"Name": "C", "Value": "x", "IsSensitive": "yes"},
                    {"Value": "no name"},
                    "text",
                ],
                "MaxParallelism": 0,
                "TargetAllWorkers": "all",
            },
            [
                "Arguments.Variables[0].Value (A) must be text or null, not 3",
                "Arguments.Variables[1]: the variable 'a' is given more than once",
                "Arguments.Variables[2].Value (B) must be text or null, not a sensitive value",
                "Arguments.Variables[3].IsSensitive (C) must be true or false",
                "Arguments.Variables[4].Name must be text",
                "Arguments.Variables[5] must be an object",
                "Arguments.MaxParallelism must be an integer from 1",
                "Arguments.TargetAllWorkers must be true or false",
            ],
        ),
    ]
    both = {"PackageId": "Acme.Web", "PackageVersion": "1.0.0", "TargetAllWorkers": True}
    cases.append(({**both, "MachineIds": ["Workers-1"]}, ["give one of them"]))
    for arguments, expected in cases:
        status, body = await hub.api.request(
            "POST", "/api/tasks", json={"Name": "Deploy", "Arguments": arguments}
        )
        assert status == 422, (arguments, body)
        said = "\n".join(body["Errors"])
        for text in expected:
            assert text in said, (text, body)
    assert await hub.api.get("/api/tasks/all?name=Deploy") == []


async def test_a_connection_cut_during_the_upload_is_ridden_out(
    hub: RunningHub, tmp_path: Path
) -> None:
    """The hub reaches the listening worker through a forwarder that resets every
    connection once 1 MiB of the 4 MiB package went through: the upload is sent
    again whole, and the deployment succeeds."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    forwarder = Forwarder(agent.port, agent_dials=False)
    port = await forwarder.start()
    try:
        [worker] = await hub.api.get("/api/workers/all")
        status, body = await hub.api.request(
            "PUT",
            f"/api/workers/{worker['Id']}",
            json={**worker, "Uri": f"https://127.0.0.1:{port}/",
                  "Endpoint": {**worker["Endpoint"], "Uri": f"https://127.0.0.1:{port}/"}},
        )  # fmt: skip
        assert status == 200, body
        data = package_bytes(padding=4 * 1024 * 1024)
        package = await upload(hub, "Acme.Web.1.0.0.zip", data)
        forwarder.cut_after(1024 * 1024)
        task = await deploy(hub)
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")
        assert forwarder.faults == 1
        assert (
            hashlib.sha256(cache_file(agent, package).read_bytes()).hexdigest() == package["Hash"]
        )
        # the cut-off upload left nothing beside it
        assert sorted(p.name for p in cache_file(agent, package).parent.iterdir()) == [
            cache_file(agent, package).name
        ]
    finally:
        await forwarder.stop()
        agent.stop()


async def test_a_polling_workers_connection_cut_during_the_upload_is_ridden_out(
    hub: RunningHub, tmp_path: Path
) -> None:
    """The polling worker reaches the hub through a forwarder that resets its
    connection once 1 MiB of the package went toward it: the worker polls again, the
    upload is sent again whole, and the deployment succeeds."""
    forwarder = Forwarder(hub.server.polling_port, agent_dials=True)
    port = await forwarder.start()
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1", port)
    try:
        package = await upload(hub, "Acme.Web.1.0.0.zip", package_bytes(padding=4 * 1024 * 1024))
        forwarder.cut_after(1024 * 1024)
        task = await deploy(hub)
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")
        assert forwarder.faults == 1
        cached = cache_file(agent, package)
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == package["Hash"]
        assert [p.name for p in cached.parent.iterdir()] == [cached.name]
    finally:
        await forwarder.stop()
        agent.stop()


async def test_artifacts_and_packages_answer_404_and_400(hub: RunningHub) -> None:
    status, body = await hub.api.request("GET", "/api/artifacts/Artifacts-9")
    assert status == 404, body
    status, body = await hub.api.request("GET", "/api/artifacts?regarding=Workers-1")
    assert status == 400, body
    assert "ServerTasks-N" in body["ErrorMessage"]
    assert (await hub.api.get("/api/artifacts"))["TotalResults"] == 0


async def test_a_deployment_goes_on_across_a_hub_restart(hub: RunningHub, tmp_path: Path) -> None:
    """The hub stops while Deploy.sh runs and starts again: the step is re-attached by
    its ticket (not started again), and the task ends with its outputs and artifact."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    marker = tmp_path / "started"
    again: HubServer | None = None
    try:
        await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
        task = await deploy(hub, Variables=variables(StartedMarker=str(marker)))
        await eventually(marker.exists, "Deploy.sh started")
        await hub.server.stop()
        # what a hub killed mid-step leaves, of a task it will not resume
        left = hub.home.path / "Deploy" / "ServerTasks-999" / "task999-0123"
        left.mkdir(parents=True, exist_ok=True)
        (left / "variables.enc").write_text("sealed")
        again = HubServer(hub.home, __version__)
        url = await again.start("127.0.0.1:0", polling_port=0)
        (tmp_path / "started.release").touch()
        connector = aiohttp.TCPConnector(ssl=pinned(hub.home))
        async with aiohttp.ClientSession(connector=connector) as session:
            api = HubApi(url, session, hub.api.key)
            done = await finished(api, task)
            assert (done["State"], done["ErrorMessage"]) == ("Success", "")
            [step] = steps_of(await api.get(f"/api/tasks/{task['Id']}/details")).values()
            assert outputs(step)["Deployed"] == "yes-web-1"
            texts = [e["MessageText"] for e in step["LogElements"]]
            assert texts.count("deploying to web-1 with ********") == 1
            listed = await api.get(f"/api/artifacts?regarding={task['Id']}")
            assert [item["Filename"] for item in listed["Items"]] == ["report-web-1.txt"]
            assert SECRET not in json.dumps(await api.get(f"/api/tasks/{task['Id']}/details"))
        assert marker.read_text() == "started\n"  # once: re-attached, not run again
        assert [p for p in (hub.home.path / "Deploy").rglob("*") if p.is_file()] == []
        assert files_holding(agent.home, SECRET.encode()) == []
    finally:
        if again is not None:
            await again.stop()
        agent.stop()


async def test_an_executor_killed_mid_step_fails_the_step_clearly(
    hub: RunningHub, tmp_path: Path
) -> None:
    """kill -9 of `tentacle calamari deploy-package` while Deploy.sh runs: the task
    fails naming the worker and the signal's exit code, and leaves no secret behind."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    marker = tmp_path / "started"
    try:
        await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
        task = await deploy(hub, Variables=variables(StartedMarker=str(marker)))
        await eventually(marker.exists, "Deploy.sh started")
        executors = executors_of(agent)
        assert len(executors) == 1, executors
        executors[0].send_signal(signal.SIGKILL)
        done = await finished(hub.api, task)
        assert done["State"] == "Failed"
        assert done["ErrorMessage"] == "web-1: the executor was killed by signal 9 (exit code 137)"
        await eventually(functools.partial(released, agent.home), "workspace released")
        assert files_holding(agent.home, SECRET.encode()) == []
    finally:
        (tmp_path / "started.release").touch()  # the orphaned Deploy.sh ends too
        agent.stop()


def executors_of(agent: AgentProcess) -> list[psutil.Process]:
    """The agent's `tentacle calamari deploy-package` processes."""
    assert agent.process is not None
    found = []
    for child in psutil.Process(agent.process.pid).children(recursive=True):
        try:
            if "deploy-package" in " ".join(child.cmdline()):
                found.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):  # ended meanwhile: not running
            continue
    return found


async def test_a_canceled_deployment_stops_its_executor(hub: RunningHub, tmp_path: Path) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    marker = tmp_path / "started"
    try:
        await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
        task = await deploy(hub, Variables=variables(StartedMarker=str(marker)))
        await eventually(marker.exists, "Deploy.sh started")
        assert len(executors_of(agent)) == 1
        status, body = await hub.api.request("POST", f"/api/tasks/{task['Id']}/cancel")
        assert status == 200, body
        done = await finished(hub.api, task)
        assert done["State"] == "Canceled", done
        await eventually(lambda: not executors_of(agent), "the executor stopped")
        await eventually(functools.partial(released, agent.home), "workspace released")
        assert files_holding(agent.home, SECRET.encode()) == []
        assert (await hub.api.get(f"/api/artifacts?regarding={task['Id']}"))["TotalResults"] == 0
    finally:
        (tmp_path / "started.release").touch()
        agent.stop()


async def test_a_package_whose_content_is_gone_fails_the_task_saying_so(
    hub: RunningHub, tmp_path: Path
) -> None:
    """As on a node that does not share the repository's folder: nothing is sent."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    try:
        package = await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
        (hub.home.path / "Packages" / package["Hash"]).unlink()
        task = await deploy(hub)
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == (
            "Failed",
            "the content of Acme.Web 1.0.0 is missing from the hub",
        )
        assert not cache_file(agent, package).exists()
    finally:
        agent.stop()


@pytest.mark.parametrize("polling", [False, True], ids=["listening", "polling"])
async def test_the_one_time_password_travels_only_in_the_scripts_environment(
    hub: RunningHub, tmp_path: Path, polling: bool
) -> None:
    """While Deploy.sh runs: the executor has the password in its environment, the step
    sent the encrypted variables file only (no password file), and no file of the
    worker's home or the hub's holds the password; nor after the deployment."""
    port = hub.server.polling_port if polling else None
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1", port)
    marker = tmp_path / "started"
    try:
        await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
        task = await deploy(hub, Variables=variables(StartedMarker=str(marker)))
        await eventually(marker.exists, "Deploy.sh started")
        [executor] = executors_of(agent)
        password = executor.environ().get("TENTACLE_VARIABLES_PASSWORD", "")
        assert len(password) >= 16, "the executor got no one-time password"
        # what the step sent: its files are kept on the hub until the step ends
        sent = sorted(p.name for p in (hub.home.path / "Deploy").rglob("*") if p.is_file())
        assert sent == ["variables.enc"]
        [workspace] = [p for p in (agent.home / "Work").iterdir() if not p.name.startswith(".")]
        assert (workspace / "variables.enc").is_file()
        assert not (workspace / "variables.password").exists()
        for home in (agent.home, hub.home.path):
            assert files_holding(home, password.encode()) == []
        (tmp_path / "started.release").touch()
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")
        for home in (agent.home, hub.home.path):
            assert files_holding(home, password.encode()) == []
            assert files_holding(home, SECRET.encode()) == []
        assert password not in await answers_of(hub, task)
    finally:
        (tmp_path / "started.release").touch()
        agent.stop()


async def test_a_deployment_to_a_pool_without_workers_runs_on_the_builtin_worker(
    hub: RunningHub,
) -> None:
    """The built-in worker runs the executor too (its ``tentacle``, the hub's own
    installation's) and gets the password through the Environment, in memory."""
    status, pool = await hub.api.request("POST", "/api/workerpools", json={"Name": "Nobody here"})
    assert status == 201, pool
    await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
    task = await deploy(hub, WorkerPoolId=pool["Id"], TargetAllWorkers=False)
    done = await finished(hub.api, task)
    assert (done["State"], done["ErrorMessage"]) == ("Success", "")
    step = steps_of(await hub.api.get(f"/api/tasks/{task['Id']}/details"))[BUILTIN_NAME]
    assert outputs(step)["Deployed"] == f"yes-{BUILTIN_NAME}"
    folder = Path(outputs(step)["Package.InstallationDirectoryPath"])
    assert folder.is_relative_to(hub.home.path / "BuiltinWorker"), folder
    assert (folder / "app.config").read_text() == f"port=8080\nname={BUILTIN_NAME}\n"
    assert (folder / "secret.sha").read_text().strip() == hashlib.sha256(
        SECRET.encode()
    ).hexdigest()
    assert SECRET not in await answers_of(hub, task)
    await check_database(hub)  # the built-in worker's folder is in the hub's home


async def test_variable_keys_in_any_case_are_the_known_ones_and_others_are_refused(
    hub: RunningHub,
) -> None:
    """``value`` and ``isSensitive`` are Value and IsSensitive (Octopus's binding is
    case-insensitive): the secret is sealed, never shown nor stored in clear; an
    unknown key is a 422 naming it, and nothing of that body is kept."""
    status, pool = await hub.api.request("POST", "/api/workerpools", json={"Name": "Nobody here"})
    assert status == 201, pool
    await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
    spelled = [
        {"Name": "Port", "VALUE": "8080"},
        {"Name": "DbPassword", "value": SECRET, "isSensitive": True},
        {"Name": "Octopus.Action.SubstituteInFiles.TargetFiles", "Value": "app.config"},
        {"Name": "Octopus.Action.EnabledFeatures", "Value": "Octopus.Features.SubstituteInFiles"},
    ]
    task = await deploy(hub, WorkerPoolId=pool["Id"], TargetAllWorkers=False, Variables=spelled)
    assert SECRET not in json.dumps(task)
    done = await finished(hub.api, task)
    assert (done["State"], done["ErrorMessage"]) == ("Success", "")
    step = steps_of(await hub.api.get(f"/api/tasks/{task['Id']}/details"))[BUILTIN_NAME]
    folder = Path(outputs(step)["Package.InstallationDirectoryPath"])
    assert (folder / "app.config").read_text() == f"port=8080\nname={BUILTIN_NAME}\n"
    assert (folder / "secret.sha").read_text().strip() == hashlib.sha256(
        SECRET.encode()
    ).hexdigest()
    texts = [e["MessageText"] for e in step["LogElements"]]
    assert f"deploying to {BUILTIN_NAME} with ********" in texts
    shown = (await hub.api.get(f"/api/tasks/{task['Id']}"))["Arguments"]["Variables"]
    assert all(set(v) <= {"Name", "Value", "IsSensitive"} for v in shown), shown
    assert shown[1] == {"Name": "DbPassword", "Value": "********", "IsSensitive": True}
    assert SECRET not in await answers_of(hub, task)
    lower = [{"name": "Port", "value": "80", "issensitive": False}]
    other = await deploy(hub, WorkerPoolId=pool["Id"], TargetAllWorkers=False, Variables=lower)
    assert other["Arguments"]["Variables"] == [
        {"Name": "Port", "Value": "80", "IsSensitive": False}
    ]
    assert (await finished(hub.api, other))["State"] == "Success"
    for unknown in ("Valeu", "Secret"):
        status, body = await hub.api.request(
            "POST",
            "/api/tasks",
            json={
                "Name": "Deploy",
                "Arguments": {
                    "PackageId": "Acme.Web",
                    "PackageVersion": "1.0.0",
                    "WorkerPoolId": pool["Id"],
                    "Variables": [{"Name": "Db", unknown: SECRET, "IsSensitive": True}],
                },
            },
        )
        assert status == 422, body
        assert f'Arguments.Variables[0] has the key "{unknown}"' in "\n".join(body["Errors"])
        assert SECRET not in json.dumps(body)
    assert len(await hub.api.get("/api/tasks/all?name=Deploy")) == 2
    await check_database(hub)


async def test_a_deployment_to_an_agent_without_scripts_2_fails_before_anything_is_sent(
    hub: RunningHub, tmp_path: Path
) -> None:
    """An agent of an older version (the real services, scripts served at version 1, as
    before the Environment) would ignore the field and run the executor without its
    password: the step fails saying so, and neither the package nor a script is sent."""
    identity, folder = generate_identity(), tmp_path / "old-agent"
    manager = ScriptManager(ScriptSettings(folder / "Work", {"PATH": os.defpath}))
    await manager.open()
    router = Router()
    router.add("capabilities", 1,
               capabilities_methods(folder, lambda: router.advertised, __version__))  # fmt: skip
    router.add("scripts", 1, ScriptService(manager).methods())
    calls: list[str] = []

    async def handler(call: IncomingCall) -> Reply:
        calls.append(f"{call.service}.{call.method}")
        return await router(call)

    settings = ChannelSettings(identity, "old-agent", __version__, router.advertised)
    listener = Listener(settings, [hub.home.identity().certificate_pem.decode()], handler)
    [(_, port), *_] = await listener.start("127.0.0.1", 0)
    try:
        status, worker = await hub.api.request("POST", "/api/workers", json={
            "Name": "old-1", "Thumbprint": identity.thumbprint, "WorkerPoolIds": ["WorkerPools-1"],
            "Endpoint": {"CommunicationStyle": "TentaclePassive",
                         "Uri": f"https://127.0.0.1:{port}/"},
            "Certificate": identity.certificate_pem.decode(),
        })  # fmt: skip
        assert status == 201, worker

        async def healthy() -> bool:
            record = await hub.api.get(f"/api/workers/{worker['Id']}")
            return bool(record["HealthStatus"] in ("Healthy", "HasWarnings"))

        await eventually(healthy, "old-1 checked", interval=0.2)
        await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
        before = list(calls)
        done = await finished(hub.api, await deploy(hub))
        assert done["State"] == "Failed"
        assert done["ErrorMessage"].startswith(
            "old-1: the worker does not take a script's Environment (it serves "
            "capabilities/1, scripts/1; scripts/2 is needed"
        ), done["ErrorMessage"]
        assert calls[len(before) :] == ["capabilities.get"]  # no upload, no script
    finally:
        await listener.stop(1.0)
        await manager.close()
