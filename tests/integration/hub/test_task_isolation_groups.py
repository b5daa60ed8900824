"""A task's scripts run in its project's isolation group (ProjectId), else its space's."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import users
from tests.helpers.hub import RunningHub, running_hub
from tests.integration.hub.tasks_helpers import finished, submit

ROOT = os.geteuid() == 0


@pytest.fixture
def reachable() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="task-groups-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def step_lines(hub: RunningHub, task: dict[str, Any]) -> list[str]:
    done = await finished(hub.api, task)
    assert done["State"] == "Success", done
    details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
    [step] = details["ActivityLogs"][0]["Children"]
    return [e["MessageText"] for e in step["LogElements"] if e["Category"] == "Info"]


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
async def test_a_tasks_scripts_run_as_its_projects_uid_else_its_spaces(reachable: Path) -> None:
    first = random.randrange(60000, 61100)
    uids = (first, first + 7)
    body = 'echo "$TentacleIsolationGroup $(id -u)"'
    try:
        async with running_hub(reachable, builtin_worker_script_users=True,
                               builtin_worker_uid_range=uids) as hub:  # fmt: skip
            project = await step_lines(hub, await submit(hub.api, ScriptBody=body,
                                                         ProjectId="Projects-7"))  # fmt: skip
            space = await step_lines(hub, await submit(hub.api, ScriptBody=body))
            again = await step_lines(hub, await submit(hub.api, ScriptBody=body,
                                                       ProjectId="Projects-7"))  # fmt: skip
    finally:
        users.kill_uids(uids)
    [(group, uid)] = [tuple(line.split()) for line in project]
    [(other, other_uid)] = [tuple(line.split()) for line in space]
    assert (group, other) == ("Projects-7", "Spaces-1")
    assert uid != other_uid
    assert uids[0] <= int(uid) <= uids[1]
    assert again == project  # the same project: the same uid


@pytest.mark.parametrize("project", ["", "  ", 7, ["Projects-1"], "x" * 201, "a\nb"])
async def test_a_bad_project_id_is_422_naming_it(hub: RunningHub, project: Any) -> None:
    for name, arguments in (
        ("AdHocScript", {"ScriptBody": "echo", "ProjectId": project}),
        ("Deploy", {"PackageId": "App", "PackageVersion": "1.0", "ProjectId": project}),
    ):
        status, answer = await hub.api.request(
            "POST", "/api/tasks", json={"Name": name, "Arguments": arguments}
        )
        assert status == 422, answer
        assert any("Arguments.ProjectId must be" in e for e in answer["Errors"]), answer
    assert await hub.api.get("/api/tasks/all") == []
