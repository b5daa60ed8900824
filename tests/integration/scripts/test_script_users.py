"""Scripts run as their isolation group's uid: one project's scripts cannot touch another's.

Real agents (as root, as CI runs them) and real uids from a small range of their own per
test (several tests and helpers run at once on one machine); the folders live under
/tmp in a folder any user may search, since pytest's own are root's alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import agent as agent_package
from agent.errors import RemoteError
from tests.helpers import users
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.integration.scripts.conftest import Scripts

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs root")
RANGE_SIZE = 8


@pytest.fixture
def uid_range() -> Iterator[tuple[int, int]]:
    """A few uids of the default range, hardly another test's; their processes killed after."""
    first = random.randrange(61184, 65519 - RANGE_SIZE)
    last = first + RANGE_SIZE - 1
    yield first, last
    users.kill_uids((first, last))


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A folder any user may search (pytest's tmp folder is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="script-users-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def isolated_agent(folder: Path, uid_range: tuple[int, int], **settings: str) -> AgentProcess:
    cli = TentacleCli(folder)
    cli.env["TENTACLE_SCRIPT_USERS"] = "on"
    cli.env["TENTACLE_SCRIPT_UID_RANGE"] = f"{uid_range[0]}-{uid_range[1]}"
    cli.env.update(settings)
    agent = AgentProcess(cli, env={"AGENT_ONLY_SECRET": "never-in-a-script"})
    cli.config_home.chmod(0o711)  # the instance's home is below it
    return agent


@pytest.fixture
async def isolated(reachable: Path, uid_range: tuple[int, int]) -> AsyncIterator[AgentProcess]:
    agent = isolated_agent(reachable, uid_range).start()
    try:
        yield agent
    finally:
        agent.stop()


async def run(scripts: Scripts, body: str, group: str | None, *args: str) -> tuple[int, str]:
    """Run ``body`` in ``group`` to its end, leaving its workspace; (exit code, stdout)."""
    params = {"Arguments": list(args)}
    if group is not None:
        params["IsolationGroup"] = group
    ticket = (await scripts.start(body, **params))["Ticket"]
    status = await scripts.wait_complete(ticket)
    out, last = [], 0
    while True:
        page = await scripts.status(ticket, last)
        out += [e["Text"] for e in page["Logs"] if e["Source"] == "stdout"]
        if not page["Logs"]:
            break
        last = page["NextLogSequence"]
    return status["ExitCode"], "\n".join(out)


PLANT = """\
echo "secret of $TentacleIsolationGroup" > mine.txt
mkdir -p "$TentacleApplications/App/1.0"
echo "deployed $TentacleIsolationGroup" > "$TentacleApplications/App/1.0/app.config"
echo "$TentacleWorkspace|$TentacleApplications|$TMPDIR|$(id -u)"
"""

# Every way in to another group's files (and the agent's); prints only what succeeded
PROBE = """\
ws=$1 apps=$2 tmp=$3 home=$4 config=$5
for f in "$ws/mine.txt" "$ws/stdout.raw" "$ws/state.json" "$ws/script.sh" \\
         "$apps/App/1.0/app.config" "$home/identity.pem" "$config"; do
  cat "$f" >/dev/null 2>&1 && echo "read $f"
done
for d in "$ws" "$apps" "$tmp" "$home" "$home/Work"; do
  ls "$d" >/dev/null 2>&1 && echo "listed $d"
done
for f in "$ws/stdout.raw" "$ws/mine.txt" "$apps/App/1.0/app.config" "$home/identity.pem"; do
  (echo forged >> "$f") 2>/dev/null && echo "appended $f"
done
(: > "$ws/stdout.raw") 2>/dev/null && echo "truncated $ws/stdout.raw"
(echo x > "$ws/new") 2>/dev/null && echo "wrote $ws/new"
(echo x > "$apps/new") 2>/dev/null && echo "wrote $apps/new"
echo probed
"""


@needs_root
async def test_two_groups_cannot_touch_each_others_files_nor_the_agents(
    isolated: AgentProcess, uid_range: tuple[int, int]
) -> None:
    async with isolated.client() as client:
        scripts = Scripts(client)
        code, planted = await run(scripts, PLANT, "Projects-1")
        assert code == 0, planted
        workspace, applications, temp, uid = planted.split("|")
        code, other = await run(scripts, PLANT, "Projects-2")
        other_uid = other.split("|")[3]
        assert {uid, other_uid} <= {str(u) for u in range(uid_range[0], uid_range[1] + 1)}
        assert uid != other_uid

        config = str(isolated.instance.config_path)
        home = str(isolated.home)
        code, probed = await run(scripts, PROBE, "Projects-2", workspace, applications, temp,
                                 home, config)  # fmt: skip
        assert (code, probed) == (0, "probed")
        # nor can a script of no group (the default one), nor one of the same group
        # reach what only the agent may
        code, probed = await run(scripts, PROBE, None, workspace, applications, temp, home, config)
        assert (code, probed) == (0, "probed")

        own = """\
ws=$1 apps=$2
cat "$ws/mine.txt"; cat "$apps/App/1.0/app.config"
(echo forged >> "$ws/stdout.raw") 2>/dev/null && echo "appended its raw log"
(cat "$ws/stdout.raw") 2>/dev/null && echo "read its raw log"
true
"""
        code, seen = await run(scripts, own, "Projects-1", workspace, applications)
        assert (code, seen) == (0, "secret of Projects-1\ndeployed Projects-1")
    # the first script's log is its own lines alone: nothing was appended to it
    log = (Path(workspace) / "stdout.raw").read_text()
    assert log == planted + "\n"
    assert Path(workspace).stat().st_uid == int(uid)
    assert (Path(workspace) / "stdout.raw").stat().st_uid == 0  # the agent's, 0600
    assert oct((Path(workspace) / "stdout.raw").stat().st_mode & 0o777) == "0o600"


@needs_root
async def test_a_script_without_a_group_runs_as_the_default_groups_uid_with_a_fresh_environment(
    isolated: AgentProcess, uid_range: tuple[int, int]
) -> None:
    body = """\
id -u; id -g; grep '^Groups:' /proc/self/status
grep -E '^(Uid|Gid|CapPrm|CapEff|CapAmb):' /proc/self/status | tr -s '\t ' ' ' | tr '\n' ';'
echo
echo "secret=${AGENT_ONLY_SECRET:-none} home=$HOME group=$TentacleIsolationGroup"
env | cut -d= -f1 | sort | tr '\\n' ' '
"""
    async with isolated.client() as client:
        capabilities = await client.call("capabilities", "get", {})
        _code, out = await run(Scripts(client), body, None)
    assert capabilities["ScriptIsolation"] == "users"
    uid, gid, groups, ids, variables, names = out.split("\n")
    assert uid == gid
    # real, effective, saved and filesystem ids all the group's, no capability left:
    # nothing lets the script become root again
    assert ids.split(";")[:-1] == [
        f"Uid: {uid} {uid} {uid} {uid}", f"Gid: {gid} {gid} {gid} {gid}",
        "CapPrm: 0000000000000000", "CapEff: 0000000000000000", "CapAmb: 0000000000000000",
    ]  # fmt: skip
    assert uid_range[0] <= int(uid) <= uid_range[1]
    assert groups.split() == ["Groups:"]  # the agent's supplementary groups were dropped
    assert variables == f"secret=none home={isolated.home}/Groups/{uid} group=default"
    allowed = {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD"}
    unexpected = [
        n for n in names.split() if n not in allowed and not n.startswith(("LC_", "Tentacle"))
    ]
    assert not unexpected, f"variables a script should not get: {unexpected}"
    record = json.loads((isolated.home / "script-users.json").read_text())
    assert record["Groups"] == {"default": int(uid)}


@needs_root
async def test_a_groups_package_cache_is_its_own(isolated: AgentProcess, tmp_path: Path) -> None:
    package = tmp_path / "App.1.0.zip"
    package.write_bytes(b"the package of project one")
    read = 'cat "$TentacleHome/Files/packages/App.zip" 2>/dev/null || echo unreadable'
    async with isolated.client() as client:
        sent = await client.upload(package, "Files/packages/App.zip", None, "Projects-1")
        scripts = Scripts(client)
        own = await run(scripts, read, "Projects-1")
        other = await run(scripts, f"cat {sent['FullPath']} 2>/dev/null || echo unreadable",
                          "Projects-2")  # fmt: skip
        elsewhere = await run(scripts, read, "Projects-2")
        with pytest.raises(RemoteError) as refused:  # a link out of the group's folder
            await client.upload(package, "../../identity.pem", None, "Projects-1")
    assert own == (0, "the package of project one")
    assert other == (0, "unreadable")
    assert elsewhere == (0, "unreadable")
    assert refused.value.kind == "refused"
    assert Path(sent["FullPath"]).parent.parent.parent == isolated.home / "Groups" / own_uid(
        isolated, "Projects-1"
    )


@needs_root
async def test_an_upload_without_a_group_lands_where_a_script_without_one_finds_it(
    isolated: AgentProcess, tmp_path: Path
) -> None:
    """A relative path sent without a group is the default group's TentacleHome, as a
    script of no group sees it (the demo's upload, then its deploy script)."""
    package = tmp_path / "App.zip"
    package.write_bytes(b"the package of no project")
    async with isolated.client() as client:
        sent = await client.upload(package, "Files/App.zip")
        seen = await run(Scripts(client), 'cat "$TentacleHome/Files/App.zip"', None)
        await client.download("Files/App.zip", tmp_path / "back.zip")
    uid = own_uid(isolated, "default")
    assert seen == (0, "the package of no project")
    assert Path(sent["FullPath"]) == isolated.home / "Groups" / uid / "Files" / "App.zip"
    assert Path(sent["FullPath"]).stat().st_uid == int(uid)
    assert (tmp_path / "back.zip").read_bytes() == b"the package of no project"


@needs_root
async def test_scripts_can_run_the_tentacle_they_are_given(isolated: AgentProcess) -> None:
    """A group's uid runs ``$TentacleExecutablePath`` (each deployment step's `tentacle
    calamari`), also when this installation's Python is under a folder only root may
    enter (pyenv under /root): the agent then gives its scripts a launcher through the
    system's Python of this version, and says so in its log."""
    body = '"$TentacleExecutablePath" version; echo "exit $?"'
    async with isolated.client() as client:
        code, out = await run(Scripts(client), body, "Projects-1")
    assert (code, out.splitlines()[0], out.splitlines()[-1]) == (
        0,
        f"Version: {agent_package.__version__}",
        "exit 0",
    ), out


def own_uid(agent: AgentProcess, group: str) -> str:
    return str(json.loads((agent.home / "script-users.json").read_text())["Groups"][group])


LONG = """\
echo "started as $(id -u)"
while [ ! -e "$HOME/release-$1" ]; do sleep 0.05; done
echo "ended as $(id -u)"
"""


@needs_root
async def test_uids_stay_across_restarts_and_a_kill_9_reattaches_to_scripts_of_other_uids(
    reachable: Path, uid_range: tuple[int, int]
) -> None:
    agent = isolated_agent(reachable, uid_range).start()
    tickets = {}
    try:
        async with agent.client() as client:
            scripts = Scripts(client)
            for group in ("alpha", "beta"):
                ticket = f"long-{group}-{secrets.token_hex(4)}"
                await scripts.start(LONG, ticket, IsolationGroup=group, Arguments=[group],
                                    Isolation="none")  # fmt: skip
                tickets[group] = ticket
            for ticket in tickets.values():
                await scripts.wait_for_state(ticket, "Running")
        before = json.loads((agent.home / "script-users.json").read_text())["Groups"]
        agent.signal(signal.SIGKILL)
        agent.wait_exit()
        agent.start()
        async with agent.client() as client:
            scripts = Scripts(client)
            for group, ticket in tickets.items():
                assert (await scripts.status(ticket))["State"] == "Running", agent.log()
                (agent.home / "Groups" / str(before[group]) / f"release-{group}").touch()
            for ticket in tickets.values():
                status = await scripts.wait_complete(ticket)
                assert status["ExitCode"] == 0, status
            _code, out = await run(scripts, "id -u", "alpha")
            _code, newcomer = await run(scripts, "id -u", "gamma")
            ended = [
                "\n".join(e["Text"] for e in (await scripts.status(t))["Logs"])
                for t in tickets.values()
            ]
        assert out == str(before["alpha"])
        assert int(newcomer) not in before.values()
        assert ended == [f"started as {before['alpha']}\nended as {before['alpha']}",
                         f"started as {before['beta']}\nended as {before['beta']}"]  # fmt: skip
        assert f"re-attached to script {tickets['alpha']}" in agent.log()
    finally:
        agent.stop()


@needs_root
async def test_bad_groups_and_a_used_up_range_are_refused_clearly(
    reachable: Path, uid_range: tuple[int, int]
) -> None:
    one = (uid_range[0], uid_range[0])
    agent = isolated_agent(reachable, one).start()
    try:
        async with agent.client() as client:
            scripts = Scripts(client)
            for bad in ("", "  ", "a\nb", "x" * 201, 7):
                with pytest.raises(RemoteError) as refused:
                    await scripts.start("echo never", IsolationGroup=bad)
                assert refused.value.kind == "bad_params", bad
                assert "IsolationGroup" in str(refused.value)
            assert (await run(scripts, "id -u", "first"))[1] == str(one[0])
            with pytest.raises(RemoteError) as used_up:
                await scripts.start("echo never", IsolationGroup="second")
            assert used_up.value.kind == "refused"
            assert f"range {one[0]}-{one[0]}" in str(used_up.value)
            assert "--script-uid-range" in str(used_up.value)
            assert (await run(scripts, "echo still serving", "first"))[1] == "still serving"
    finally:
        agent.stop()
    assert list((agent.home / "Groups").iterdir()) == [agent.home / "Groups" / str(one[0])]


@pytest.fixture
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    """An unprivileged user, removed afterwards (with what it left running)."""
    if not ROOT:
        pytest.skip("creating a user needs root")
    with users.throwaway_user("tu") as user:
        yield user


def python_for(user: pwd.struct_passwd) -> tuple[str, dict[str, str]]:
    """A python ``user`` may run this project with, and the environment it needs: this
    one, else the system's of the same version over this one's packages; else skip."""
    probe = [sys.executable, "-c", "import agent"]
    with contextlib.suppress(PermissionError):
        if subprocess.run(probe, user=user.pw_uid, check=False).returncode == 0:
            return sys.executable, {}
    system = shutil.which("python3", path="/usr/bin:/bin")
    path = f"{Path(agent_package.__file__).parents[1]}:{sysconfig.get_paths()['purelib']}"
    version = f"import sys; assert sys.version_info[:2] == {tuple(sys.version_info[:2])}"
    check = [system or "python3", "-c", f"{version}; import agent"]
    env = {"PYTHONPATH": path}
    if system and subprocess.run(check, user=user.pw_uid, env=env, check=False).returncode == 0:
        return system, {"PYTHONPATH": path}
    pytest.skip(f"no python that user {user.pw_name} may run this project with")


@needs_root
async def test_an_agent_that_cannot_switch_refuses_groups_unless_told_one_user_is_accepted(
    reachable: Path, uid_range: tuple[int, int], throwaway_user: pwd.struct_passwd
) -> None:
    user = throwaway_user
    cli = TentacleCli(reachable)
    cli.env["TENTACLE_SCRIPT_USERS"] = "on"
    python, env = python_for(user)
    agent = AgentProcess(cli, env=env, user=(user.pw_uid, user.pw_gid), python=python)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(cli.config_home)],
                   check=True)  # fmt: skip
    agent.start()
    try:
        line = agent.wait_for_log("calls that name an isolation group are refused")
        assert "--script-users off" in line
        async with agent.client() as client:
            scripts = Scripts(client)
            capabilities = await client.call("capabilities", "get", {})
            assert capabilities["ScriptIsolation"] == "none"
            with pytest.raises(RemoteError) as refused:
                await scripts.start("echo never", IsolationGroup="Projects-1")
            assert refused.value.kind == "refused"
            message = str(refused.value)
            assert "cannot run scripts as other users" in message
            assert "--script-users off" in message
            assert await run(scripts, "id -u", None) == (0, str(user.pw_uid))
            package = reachable / "package.zip"
            package.write_bytes(b"zip")
            with pytest.raises(RemoteError) as upload_refused:
                await client.upload(package, "Files/packages/p.zip", None, "Projects-1")
            assert upload_refused.value.kind == "refused"
            assert "--script-users off" in str(upload_refused.value)
        agent.stop()
        agent.env["TENTACLE_SCRIPT_USERS"] = "off"  # the operator accepts one user for all
        agent.start()
        async with agent.client() as client:
            assert await run(Scripts(client), "id -u", "Projects-1") == (0, str(user.pw_uid))
        assert "refused" not in agent.log()
    finally:
        agent.stop()


VICTIM = """\
umask 077; echo "victim-secret" > "$HOME/secret.txt"; echo "$HOME"
"""

# A script's own workspace is its uid's: it replaces the agent's state with one naming
# the victim's group, Pending, and garbles wrapper.pid so that a restart finds the
# ticket never launched; its next script.sh, run as the victim's uid in a folder
# opened to all, would read the victim's files
FORGE = """\
chmod 0777 .
cat > forged.json <<JSON
{"spec": {"ticket": "$TentacleScriptTicket", "syntax": "bash", "arguments": [], "isolation": "none",
 "mutex_name": "x", "mutex_timeout": null, "task_id": "", "grace": 1.0, "isolation_group": "victim",
 "with_environment": false, "limits": {"memory_bytes": null, "pids": null, "cpu_weight": null}},
 "state": "Pending", "exit_code": null, "created": "2026-01-01T00:00:00.000+00:00",
 "started": null, "completed": null, "pid": null}
JSON
mv -f forged.json state.json
printf 'echo "ran as $(id -u)"; cat "%s/secret.txt"\\n' "$1" > next.sh
mv -f next.sh script.sh
echo garbage > wrapper.pid; chmod 0666 wrapper.pid
echo forged
"""

# ...and one that leaves a log.index pointing at a file of root's, which a restarted
# agent cut down to its "valid" index records (none)
PLANT_INDEX = """\
rm -f log.index; ln -s "$1" log.index; echo planted
"""


async def all_texts(scripts: Scripts, ticket: str) -> list[str]:
    """Every log line of ``ticket`` (all sources), page by page."""
    texts: list[str] = []
    last = 0
    while (page := await scripts.status(ticket, last))["Logs"]:
        texts += [line for e in page["Logs"] for line in e["Text"].split("\n")]
        last = page["NextLogSequence"]
    return texts


@needs_root
async def test_a_workspace_the_script_tampered_with_is_not_followed_after_a_restart(
    reachable: Path, uid_range: tuple[int, int]
) -> None:
    precious = reachable / "precious.txt"
    precious.write_text("root's data that must stay\n")
    precious.chmod(0o600)
    agent = isolated_agent(reachable, uid_range).start()
    try:
        async with agent.client() as client:
            scripts = Scripts(client)
            code, victim_home = await run(scripts, VICTIM, "victim")
            assert code == 0, victim_home
            forger = f"forger-{secrets.token_hex(4)}"
            await scripts.start(FORGE, forger, IsolationGroup="evil", Arguments=[victim_home],
                                Isolation="none")  # fmt: skip
            assert (await scripts.wait_complete(forger))["ExitCode"] == 0
            planter = f"planter-{secrets.token_hex(4)}"
            await scripts.start(PLANT_INDEX, planter, IsolationGroup="evil",
                                Arguments=[str(precious)], Isolation="none")  # fmt: skip
            assert (await scripts.wait_complete(planter))["ExitCode"] == 0
        agent.stop()
        agent.start()
        async with agent.client() as client:
            scripts = Scripts(client)
            forged = await scripts.wait_complete(forger)
            texts = await all_texts(scripts, forger)
            planted = await all_texts(scripts, planter)
            # the happy path after a restart: the victim's group still runs as its own
            code, again = await run(scripts, 'cat "$HOME/secret.txt"', "victim")
        assert not any("victim-secret" in t or "ran as" in t for t in texts), texts
        assert forged["ExitCode"] == -46, (forged, agent.log())  # unknown: not run again
        assert any("Tampered workspace" in t and "state.json" in t for t in texts), texts
        assert precious.read_text() == "root's data that must stay\n"
        assert planted[0] == "planted", planted
        assert any("was not followed" in t for t in planted), planted
        assert (code, again) == (0, "victim-secret")
    finally:
        agent.stop()


OTHER_PROJECT = """\
umask 077; mkdir -p "$TentacleApplications/App/1.0"
echo "ConnectionString=victim-db-password" > "$TentacleApplications/App/1.0/app.config"
echo "$TentacleApplications/App/1.0/app.config"
"""
ARTIFACTS = """\
echo "my report" > report.txt; ln -s "$1" link.txt; echo "$TentacleWorkspace"
"""


@needs_root
async def test_a_download_naming_a_group_serves_only_that_groups_files(
    isolated: AgentProcess, tmp_path: Path
) -> None:
    """An artifact a script names (``##octopus[createArtifact path=...]``) is fetched as
    the step's group: its own file comes; another project's file, the agent's own, or a
    link to one is refused (review finding 4); without a group the operator's download
    is as before."""
    async with isolated.client() as client:
        scripts = Scripts(client)
        _, victim = await run(scripts, OTHER_PROJECT, "Projects-2")
        _, workspace = await run(scripts, ARTIFACTS, "Projects-1", victim)
        own = await client.download(f"{workspace}/report.txt", tmp_path / "r", None, "Projects-1")
        refused: dict[str, RemoteError] = {}
        others = {
            "another project's": victim,
            "a link": f"{workspace}/link.txt",
            "the agent's": str(isolated.home / "script-users.json"),
        }
        for what, path in others.items():
            with pytest.raises(RemoteError) as error:
                await client.download(path, tmp_path / "stolen", None, "Projects-1")
            refused[what] = error.value
        await client.download(victim, tmp_path / "operator")
    assert (tmp_path / "r").read_text() == "my report\n"
    assert own["Length"] == len("my report\n")
    assert not (tmp_path / "stolen").exists()
    assert {what: error.kind for what, error in refused.items()} == dict.fromkeys(others, "refused")
    assert "serves only that group's files" in str(refused["another project's"])
    assert "serves only that group's files" in str(refused["the agent's"])
    assert (tmp_path / "operator").read_text() == "ConnectionString=victim-db-password\n"
