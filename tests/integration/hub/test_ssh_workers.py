"""SSH workers in the hub, against a real OpenSSH server on loopback: added through
/api/workers with the host key fingerprint the discover route fetched, validated,
health-checked (facts: the OS, free disk), running AdHocScript and Deploy tasks as
agents do (a sensitive variable absent from the target's disk and masked in the task
log), and refused with both fingerprints named once the pinned key is not the
server's. One sshd for the session; each test on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.hub import RunningHub, running_hub
from tests.helpers.sshd import SshServer
from tests.integration.hub.ssh_helpers import add_ssh_worker, checked, key_account
from tests.integration.hub.tasks_helpers import finished, submit
from tests.integration.hub.test_deploy import (
    SECRET,
    answers_of,
    deploy,
    files_holding,
    outputs,
    package_bytes,
    steps_of,
    upload,
)

OTHER_FINGERPRINT = "SHA256:" + "A" * 43
ROOT = "steps-root"  # hub.yaml's SshWorkerRoot: the SSH workers' folder on the targets


@pytest.fixture
async def hub(tmp_path: Path, database_url: str) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path, database_url, ssh_worker_root=ROOT) as running:
        yield running


def named(answer: dict[str, Any], *parts: str) -> bool:
    lines = [answer["ErrorMessage"], *answer["Errors"]]
    return any(all(part in line for part in parts) for line in lines)


async def test_an_ssh_worker_is_added_with_the_fetched_fingerprint_and_validated(
    hub: RunningHub, sshd: SshServer
) -> None:
    assert hub.server.tasks is not None
    await hub.server.tasks.stop()  # the API alone here: its checks are the next test's
    found = await hub.api.get(f"/api/workers/discover?type=Ssh&host=127.0.0.1&port={sshd.port}")
    assert found["Fingerprint"] == sshd.fingerprint
    assert found["Endpoint"] == {
        "CommunicationStyle": "Ssh", "Host": "127.0.0.1", "Port": sshd.port,
        "Fingerprint": sshd.fingerprint, "AccountId": None,
        "Uri": f"ssh://127.0.0.1:{sshd.port}/", "Thumbprint": None, "Id": None,
    }  # fmt: skip
    assert sshd.fingerprint in found["DiscoveryMessage"]
    account = await key_account(hub.api, sshd, "deploy")
    worker = await add_ssh_worker(hub.api, sshd, "ssh-1", account)
    assert worker["Endpoint"] == {**found["Endpoint"], "AccountId": account["Id"]}
    assert (worker["Thumbprint"], worker["Uri"]) == (None, f"ssh://127.0.0.1:{sshd.port}/")
    ssh_only = await hub.api.get("/api/workers?commStyles=Ssh")
    assert [w["Name"] for w in ssh_only["Items"]] == ["ssh-1"]
    # read, then written back as it is: unchanged
    status, same = await hub.api.request("PUT", f"/api/workers/{worker['Id']}", json=worker)
    assert status == 200, same
    assert same["Endpoint"] == worker["Endpoint"]

    body = {"Name": "ssh-2", "WorkerPoolIds": ["WorkerPools-1"], "Endpoint": worker["Endpoint"]}
    status, answer = await hub.api.request("POST", "/api/workers", json=body)
    assert status == 409, answer  # the same login on the same server
    assert "logs in to" in answer["ErrorMessage"]
    assert worker["Id"] in answer["ErrorMessage"]
    bad = {**body, "Endpoint": {**worker["Endpoint"], "Port": 70000, "Host": "-x",
                                "Fingerprint": "MD5:ab:cd", "AccountId": "Workers-1"}}  # fmt: skip
    status, answer = await hub.api.request("POST", "/api/workers", json=bad)
    assert status == 422, answer
    assert named(answer, "Endpoint.Port must be a port number from 1 to 65535, not 70000")
    assert named(answer, "Endpoint.Host: expected a host name or an IP address", "'-x'")
    assert named(answer, "Endpoint.Fingerprint must be the SSH host key's SHA256", "'MD5:ab:cd'")
    assert named(answer, "Endpoint.AccountId: there is no account 'Workers-1'")

    status, answer = await hub.api.request("DELETE", f"/api/accounts/{account['Id']}")
    assert status == 409, answer
    assert "used by 1 worker(s): ssh-1" in answer["ErrorMessage"]
    usages = await hub.api.get(f"/api/accounts/{account['Id']}/usages")
    assert usages == {"Workers": [{"Id": worker["Id"], "Name": "ssh-1"}]}
    status, _ = await hub.api.request("DELETE", f"/api/workers/{worker['Id']}")
    assert status == 200
    status, _ = await hub.api.request("DELETE", f"/api/accounts/{account['Id']}")
    assert status == 200

    code, answer = await hub.api.request(
        "GET", "/api/workers/discover?type=Ssh&host=127.0.0.1&port=1"
    )
    assert code == 400, answer
    assert "cannot read the SSH host key of 127.0.0.1:1" in answer["ErrorMessage"]


async def test_an_ssh_worker_is_checked_runs_scripts_and_deployments_and_pins_its_key(
    hub: RunningHub, sshd: SshServer, tmp_path: Path
) -> None:
    account = await key_account(hub.api, sshd, "deploy")
    worker = await checked(hub.api, await add_ssh_worker(hub.api, sshd, "ssh-1", account))
    assert worker["HealthStatus"] == "Healthy", worker["StatusSummary"]
    assert worker["OperatingSystem"].startswith("Linux")
    assert worker["FreeDiskSpaceMegabytes"] > 0
    assert worker["ShellName"] in ("bash", "sh")

    script = "echo out\necho err >&2\npwd\nexit 3"
    task = await submit(hub.api, ScriptBody=script, Syntax="SH")
    done = await finished(hub.api, task)
    assert (done["State"], done["ErrorMessage"]) == (
        "Failed",
        "ssh-1: the script exited with code 3",
    )
    [step] = (await hub.api.get(f"/api/tasks/{task['Id']}/details"))["ActivityLogs"][0]["Children"]
    texts = [e["MessageText"] for e in step["LogElements"]]
    assert sorted(texts[:3])[1:] == ["err", "out"]  # stdout and stderr, as they came
    work = [text for text in texts if text.startswith(f"{sshd.home}/{ROOT}/Work/")]
    assert len(work) == 1  # its own folder, under the hub's SshWorkerRoot
    assert texts[-1].endswith("code 3")

    await upload(hub, "Acme.Web.1.0.0.zip", package_bytes())
    task = await deploy(hub)
    done = await finished(hub.api, task)
    assert (done["State"], done["ErrorMessage"]) == ("Success", ""), done
    step = steps_of(await hub.api.get(f"/api/tasks/{task['Id']}/details"))["ssh-1"]
    assert outputs(step)["Deployed"] == "yes-ssh-1"
    texts = [e["MessageText"] for e in step["LogElements"]]
    assert "deploying to ssh-1 with ********" in texts
    assert SECRET not in await answers_of(hub, task)
    assert files_holding(sshd.home, SECRET.encode()) == []  # not on the target's disk

    # the pinned key is not the server's (a changed key, or a machine in the middle)
    changed = {**worker, "Endpoint": {**worker["Endpoint"], "Fingerprint": OTHER_FINGERPRINT}}
    status, answer = await hub.api.request("PUT", f"/api/workers/{worker['Id']}", json=changed)
    assert status == 200, answer
    status, check = await hub.api.request(
        "POST", "/api/tasks", json={"Name": "Health", "Arguments": {"MachineIds": [worker["Id"]]}}
    )
    assert status == 201, check
    await finished(hub.api, check)
    record = await hub.api.get(f"/api/workers/{worker['Id']}")
    assert record["HealthStatus"] == "Unavailable"
    assert sshd.fingerprint in record["StatusSummary"]
    assert OTHER_FINGERPRINT in record["StatusSummary"]
