"""The hub's built-in worker by the agent's rule: each project's steps as a uid of its own."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agent import __version__
from agent.client import RemoteError
from agent.hub.builtin import BuiltinWorker
from agent.hub.home import create_home
from agent.hub.server import HubServer
from tests.helpers import users
from tests.integration.hub.test_builtin_worker import run

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs root")


@pytest.fixture
def reachable() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="builtin-users-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def uid_range() -> Iterator[tuple[int, int]]:
    first = random.randrange(60000, 61100)
    yield first, first + 7
    users.kill_uids((first, first + 7))


@asynccontextmanager
async def isolating(hub: Path, uid_range: tuple[int, int]) -> AsyncIterator[BuiltinWorker]:
    worker = BuiltinWorker(hub, None, version="test", environment=dict(os.environ),
                           script_users=True, uid_range=uid_range)  # fmt: skip
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


PLANT = """\
mkdir -p "$TentacleApplications/App" && echo "deployed $TentacleIsolationGroup" > \\
  "$TentacleApplications/App/app.config"
echo "$(id -u)|$TentacleApplications|$TMPDIR|$HOME|${USER:-no user}"
"""
PROBE = """\
for f in "$1/App/app.config" "$2" "$3" "$4"; do cat "$f" >/dev/null 2>&1 && echo "read $f"; done
for d in "$1" "$5"; do ls "$d" >/dev/null 2>&1 && echo "listed $d"; done
(echo x > "$1/forged") 2>/dev/null && echo "wrote $1"
echo probed
"""


@needs_root
async def test_builtin_steps_of_two_projects_run_apart_and_away_from_the_hubs_files(
    reachable: Path, uid_range: tuple[int, int], tmp_path: Path
) -> None:
    hub = create_home(reachable / "hub")
    package = tmp_path / "p.zip"
    package.write_bytes(b"project one's package")
    async with isolating(hub.path, uid_range) as worker:
        assert (await worker.capabilities())["ScriptIsolation"] == "users"
        _o, planted = await run(worker, PLANT, isolation_group="Projects-1")
        uid, applications, temp, home, user = planted.of("stdout")[0].split("|")
        _o, other = await run(worker, PLANT, isolation_group="Projects-2")
        sent = await worker.upload(package, "Files/packages/p.zip", None, "Projects-1")
        outcome, probed = await run(
            worker, PROBE, isolation_group="Projects-2",
            arguments=[applications, str(hub.identity_path), str(hub.settings_path),
                       sent["FullPath"], temp],
        )  # fmt: skip
        _o, own = await run(worker, 'cat "$TentacleHome/Files/packages/p.zip"',
                            isolation_group="Projects-1")  # fmt: skip
    assert uid_range[0] <= int(uid) <= uid_range[1]
    assert other.of("stdout")[0].split("|")[0] not in (uid, "0")
    assert home == str(hub.path / "BuiltinWorker" / "Groups" / uid)
    assert user == "no user"  # the hub's account is no step's
    assert (outcome.exit_code, probed.of("stdout")) == (0, ["probed"])
    assert own.of("stdout") == ["project one's package"]


@needs_root
async def test_a_builtin_step_without_a_project_runs_in_the_default_group_not_as_root(
    reachable: Path, uid_range: tuple[int, int]
) -> None:
    hub = create_home(reachable / "hub")
    async with isolating(hub.path, uid_range) as worker:
        _o, out = await run(worker, "id -u; echo $TentacleIsolationGroup")
        with pytest.raises(RemoteError) as bad:
            await run(worker, "echo never", isolation_group="")
    uid, group = out.of("stdout")
    assert uid != "0"
    assert group == "default"
    assert bad.value.kind == "bad_params"


@needs_root
async def test_a_builtin_worker_whose_home_others_cannot_reach_refuses_to_start(
    tmp_path: Path, uid_range: tuple[int, int]
) -> None:
    hub = create_home(tmp_path / "private" / "hub")
    (tmp_path / "private").chmod(0o700)
    with pytest.raises(Exception, match="is not searchable by other users") as refused:
        async with isolating(hub.path, uid_range):
            pass
    assert "--builtin-worker-script-users false" in str(refused.value)


@needs_root
async def test_a_hub_runs_its_builtin_steps_as_their_projects_uid_by_default(
    reachable: Path, uid_range: tuple[int, int]
) -> None:
    """No setting: BuiltinWorkerScriptUsers is on (the agents' rule), and the steps can run
    the `tentacle` they are given (each deployment step's executor)."""
    home = create_home(reachable / "hub").with_settings(builtin_worker_uid_range=uid_range)
    assert "BuiltinWorkerScriptUsers: true" in home.settings_path.read_text()  # a new hub's
    server = HubServer(home, __version__)
    await server.start("127.0.0.1:0", polling_port=0)
    try:
        assert isinstance(server.builtin, BuiltinWorker)
        assert (await server.builtin.capabilities())["ScriptIsolation"] == "users"
        body = 'id -u; "$TentacleExecutablePath" version | head -1'
        _o, out = await run(server.builtin, body, isolation_group="Projects-1")
    finally:
        await server.stop()
    uid, version = out.of("stdout")
    assert uid_range[0] <= int(uid) <= uid_range[1]
    assert version == f"Version: {__version__}"


@needs_root
async def test_a_builtin_download_naming_a_project_serves_only_that_projects_files(
    reachable: Path, uid_range: tuple[int, int], tmp_path: Path
) -> None:
    """An artifact a step names is fetched as its project's group: another project's
    file, or the hub's own, is refused (review finding 4); the step's own file comes."""
    hub = create_home(reachable / "hub")
    async with isolating(hub.path, uid_range) as worker:
        _o, mine = await run(worker, PLANT, isolation_group="Projects-1")
        _o, theirs = await run(worker, PLANT, isolation_group="Projects-2")
        own, other = (f"{c.of('stdout')[0].split('|')[1]}/App/app.config" for c in (mine, theirs))
        await worker.download(own, tmp_path / "own", None, "Projects-1")
        refused = []
        for path in (other, str(hub.identity_path)):
            with pytest.raises(RemoteError) as error:
                await worker.download(path, tmp_path / "stolen", None, "Projects-1")
            refused.append(error.value)
    assert (tmp_path / "own").read_text() == "deployed Projects-1\n"
    assert not (tmp_path / "stolen").exists()
    assert [error.kind for error in refused] == ["refused", "refused"]
    assert "serves only that group's files" in str(refused[0])
