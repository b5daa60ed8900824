"""A Deploy task through a real hub on a real agent whose scripts run as their project's
uid (as root, as CI runs): the package is cached in the project's own folder and
installed by the executor (`$TentacleExecutablePath calamari ...`) as that uid."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import users
from tests.helpers.hub import running_hub
from tests.integration.hub.tasks_helpers import add_worker, finished
from tests.integration.hub.test_deploy import (
    DEPLOY_SH,
    SECRET,
    deploy,
    outputs,
    package_bytes,
    steps_of,
    upload,
)

ROOT = os.geteuid() == 0


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A folder any user may search (pytest's are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="deploy-users-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
async def test_a_deployment_runs_as_its_projects_uid_from_its_own_package_cache(
    reachable: Path,
) -> None:
    first = random.randrange(61184, 65519 - 8)
    uids = (first, first + 7)
    try:
        async with running_hub(reachable, builtin_worker=False) as hub:
            agent = await add_worker(hub.api, hub.home.identity(), reachable, "web-1",
                                     script_uids=uids)  # fmt: skip
            try:
                package = await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
                task = await deploy(hub, ProjectId="Projects-3")
                done = await finished(hub.api, task)
                details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
            finally:
                agent.stop()
    finally:
        users.kill_uids(uids)
    step = steps_of(details)["web-1"]
    assert (done["State"], done["ErrorMessage"]) == ("Success", ""), step["LogElements"]
    groups = json.loads((agent.home / "script-users.json").read_text())["Groups"]
    uid = groups["Projects-3"]
    folder = agent.home / "Groups" / str(uid)
    # the package in the project's own cache, the project's file
    cached = folder / "Files" / "packages" / f"{package['Hash']}.zip"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == package["Hash"]
    assert cached.stat().st_uid == uid
    assert not (agent.home / "Files" / "packages").exists()
    # installed by the executor as the project's uid, in the project's Applications
    installed = Path(outputs(step)["Package.InstallationDirectoryPath"])
    assert installed.is_relative_to(folder / "Applications"), installed
    assert (installed / "app.config").read_text() == "port=8080\nname=web-1\n"
    assert (installed / "app.config").stat().st_uid == uid
    assert (installed / "secret.sha").read_text().strip() == hashlib.sha256(
        SECRET.encode()
    ).hexdigest()


def package_naming(artifact: Path) -> bytes:
    """Deploy.sh as the demo's, which also names ``artifact`` as an artifact."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.config", "port=#{Port}\n")
        archive.writestr("Deploy.sh", f'{DEPLOY_SH}new_octopusartifact "{artifact}" stolen.json\n')
    return buffer.getvalue()


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
async def test_an_artifact_is_fetched_as_its_steps_project_never_a_file_not_its_own(
    reachable: Path,
) -> None:
    """The hub fetches a step's artifacts naming the step's isolation group: its own
    report comes, a file it names that its project's uid does not own (here the agent's
    own script-users.json) is refused and only warned about (review finding 4)."""
    first = random.randrange(61184, 65519 - 8)
    uids = (first, first + 7)
    try:
        async with running_hub(reachable, builtin_worker=False) as hub:
            agent = await add_worker(hub.api, hub.home.identity(), reachable, "web-1",
                                     script_uids=uids)  # fmt: skip
            try:
                stolen = agent.home / "script-users.json"
                await upload(hub, "Acme.Web.1.0.0.zip", package_naming(stolen))
                task = await deploy(hub, ProjectId="Projects-3")
                done = await finished(hub.api, task)
                details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
                listed = await hub.api.get(f"/api/artifacts?regarding={task['Id']}")
            finally:
                agent.stop()
    finally:
        users.kill_uids(uids)
    step = steps_of(details)["web-1"]
    assert (done["State"], done["ErrorMessage"]) == ("Success", ""), step["LogElements"]
    assert [item["Filename"] for item in listed["Items"]] == ["report-web-1.txt"]
    assert "serves only that group's files" in json.dumps(step["LogElements"])
