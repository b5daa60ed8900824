"""Deploy tasks: a package from the hub's repository installed on workers by the executor.

Each chosen worker runs one step (agent.hub.steps) that:

1. makes sure the worker has the package, once per content hash: a cache on the
   worker, ``Files/packages/<sha256><ext>`` under its home, kept for later
   deployments. A short probe script reports the cached file's hash; only a
   missing or different file is sent (``files.upload``, which replaces the file
   whole or not at all and rides out a dropped connection).
2. sends the variables as the executor's encrypted variables file (Calamari's
   format, agent.hub.secrets) with the step's script, and the step's one-time
   password only in the script's ``Environment`` (``TENTACLE_VARIABLES_PASSWORD``),
   which the agent keeps in memory and passes to the script's process, never to
   its disk (docs/protocol.md §8, scripts/2). A worker that does not take an
   Environment (an older agent) fails the step before anything is sent to it.
3. runs ``tentacle calamari deploy-package`` there (``$TentacleExecutablePath``,
   the agent's own command), under the agent's isolation mutex as Octopus's
   deployments do (one at a time per worker: the executor's journal is one file).
4. collects what it reported: output variables (``setVariable``, read by the
   engine) and artifacts (``createArtifact``: fetched from the worker into
   ``<hub home>/Artifacts/<id>`` and recorded). When the deployment fails, the
   executor's own message (its last line on stderr) becomes the step's error.

Sensitive values are masked in every stored line (``masked``), are sealed in the
task's arguments (agent.hub.secrets) and never reach the worker's disk in clear.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import secrets
import shlex
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.client import ENVIRONMENT_SERVICE, LogChunk, ScriptRequest, Worker, takes_environment
from agent.errors import TentacleError
from agent.hub import ids
from agent.hub.adhoc import StepWorkers, outcome_of, remaining, task_isolation_group
from agent.hub.packages import ArtifactFiles, Repository
from agent.hub.reach import WorkerReach
from agent.hub.rules.dispatch import DEFAULT_MAX_PARALLELISM
from agent.hub.runner import Outcome, TaskLog
from agent.hub.secrets import (
    DeployVariable,
    HubKey,
    SecretError,
    encrypted_variables_file,
    one_time_password,
    opened_variables,
)
from agent.hub.steps import FAILED, ChosenWorker, Refused, StepLog, StepResult, run_steps
from agent.hub.store import Store
from agent.hub.store import packages as store_packages
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_one

CACHE = "Files/packages"  # the workers' package cache, relative to their home
SCRATCH = "Deploy"  # <hub home>/Deploy/<task>/<ticket>/: a step's files until it started
VARIABLES_FILE = "variables.enc"
PASSWORD_VARIABLE = "TENTACLE_VARIABLES_PASSWORD"  # noqa: S105 - a variable's name
FAILURE_VARIABLE = "Tentacle.Deploy.FailureMessage"
PROBE_MUTEX = "tentacle-package-cache"

PROBE = """\
f="$TentacleHome"/{remote}
if [ -f "$f" ]; then
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$f"; else shasum -a 256 "$f"; fi |
    cut -c1-64
else
  echo absent
fi
"""

# The password comes in the script's environment (the start's Environment) and goes to
# the executor only. The executor's stderr passes through a loop that keeps its last
# line: the deployment's own message when it fails, reported as a service message that
# the hub takes as the step's error.
DEPLOY = """\
package="$TentacleHome"/{remote}
if [ ! -f "$package" ]; then
  echo "the package {shown} is not in this worker's package cache ($package)" >&2
  exit 1
fi
exec 3>&1
outcome=$(
  {{ "${{TentacleExecutablePath:-tentacle}}" calamari deploy-package --package "$package" \\
      --variables {variables_file} 2>&1 1>&3 3>&-
    printf '%s%s\\n' {marker} "$?"; }} |
  {{ last="" code=1
    while IFS= read -r line; do
      case "$line" in
        {marker}*) code="${{line#{marker}}}" ;;
        *) printf '%s\\n' "$line" >&2; [ -n "$line" ] && last="$line" ;;
      esac
    done
    printf '%s %s' "$code" "$last"; }}
)
exec 3>&-
unset TENTACLE_VARIABLES_PASSWORD
code="${{outcome%% *}}"
if [ "$code" != 0 ]; then
  message="${{outcome#* }}"
  message="${{message#Error: }}"
  message="${{message#error: }}"
  if [ "$code" -gt 128 ] 2>/dev/null; then
    message="the executor was killed by signal $((code - 128)) (exit code $code)"
  fi
  encoded=$(printf '%s' "$message" | base64 | tr -d '\\n')
  printf "##octopus[setVariable name='%s' value='%s']\\n" {failure_name} "$encoded"
fi
exit "$code"
"""


class DeployError(TentacleError):
    """A step could not do its part; the message says what (the engine adds the worker)."""


@dataclasses.dataclass(frozen=True)
class Deployment:
    """What every step of one Deploy task shares."""

    task: Row
    package: Row
    variables: list[DeployVariable]
    repository: Repository
    artifacts: ArtifactFiles
    store: Store
    scratch: Path
    now: Callable[[], datetime]

    @property
    def shown(self) -> str:
        return f"{self.package['package_id']} {self.package['version']}"

    @property
    def remote(self) -> str:
        return f"{CACHE}/{self.package['sha256']}{self.package['file_extension']}"


class DeployWork:
    """One worker's part of a Deploy task (agent.hub.steps.StepWork)."""

    def __init__(self, deployment: Deployment, chosen: ChosenWorker) -> None:
        self.deployment = deployment
        self.chosen = chosen

    def masked(self) -> Sequence[str]:
        return [v.value for v in self.deployment.variables if v.sensitive and v.value]

    async def prepare(self, worker: Worker, ticket: str, log: StepLog) -> ScriptRequest:
        await self._check_environment(worker)
        await self._send_package(worker, ticket, log)
        return self._request(ticket)

    async def resume(self, worker: Worker, ticket: str, log: StepLog) -> ScriptRequest:
        # a new password and file: used only if the start never reached the worker (a
        # script already started keeps its own, in its process's environment)
        return self._request(ticket)

    async def collect(
        self, worker: Worker, ticket: str, result: StepResult, log: StepLog
    ) -> StepResult:
        shutil.rmtree(self.deployment.scratch / ticket, ignore_errors=True)
        kept = [v for v in result.output_variables if v.get("Name") != FAILURE_VARIABLE]
        failure = next(
            (v.get("Value") for v in result.output_variables if v.get("Name") == FAILURE_VARIABLE),
            None,
        )
        error = result.error
        if result.state == FAILED and failure:
            error = f"{self.chosen.name}: {failure}"
        for path, name in result.artifacts:
            await self._fetch_artifact(worker, ticket, path, name, log)
        return dataclasses.replace(result, output_variables=kept, error=error)

    async def _check_environment(self, worker: Worker) -> None:
        """DeployError unless the worker passes a start's Environment to the script: an
        older agent would ignore it, and the executor would run without its password.
        (agent.client.scripts checks it again as it starts the script.)"""
        try:
            capabilities = await worker.capabilities()
        except Exception as error:
            raise DeployError(f"cannot ask the worker what it supports: {error}") from None
        services = list(capabilities.get("SupportedCapabilities") or [])
        if not takes_environment(services):
            served = ", ".join(services) or "nothing"
            raise DeployError(
                f"the worker does not take a script's Environment (it serves {served}; "
                f"{ENVIRONMENT_SERVICE} is needed for the one-time password of the encrypted "
                "variables, which is never written to a worker's disk); upgrade its agent"
            )

    # -- the package ---------------------------------------------------------

    async def _send_package(self, worker: Worker, ticket: str, log: StepLog) -> None:
        deployment, name = self.deployment, self.chosen.name
        sha = deployment.package["sha256"]
        cached = await self._cached_hash(worker, ticket)
        if cached == sha:
            await log.info(
                f"{deployment.shown} is in the package cache of {name} already "
                f"(sha256 {sha[:12]}): not sent again"
            )
            return
        local = deployment.repository.path(sha)
        if not local.is_file():
            raise DeployError(
                f"the content of {deployment.shown} is missing from the hub ({local})"
            )
        size = deployment.package["size"]
        await log.info(f"Sending {deployment.shown} ({size} bytes) to the package cache of {name}")
        try:
            # into the cache of the task's isolation group: its scripts' TentacleHome
            reply = await worker.upload(local, deployment.remote, None,
                                        task_isolation_group(deployment.task))  # fmt: skip
        except Exception as error:
            raise DeployError(f"sending the package {deployment.shown} failed: {error}") from None
        if reply.get("Sha256") != sha:
            raise DeployError(
                f"the package {deployment.shown} arrived damaged (sha256 {reply.get('Sha256')}, "
                f"expected {sha})"
            )

    async def _cached_hash(self, worker: Worker, ticket: str) -> str | None:
        """The hash of the worker's cached copy, None if it has none."""
        lines: list[str] = []

        def output(chunk: LogChunk) -> None:
            if chunk.source == "stdout":
                lines.extend(line.strip() for line in chunk.lines if line.strip())

        request = ScriptRequest(
            body=PROBE.format(remote=shlex.quote(self.deployment.remote)),
            isolation="none",
            mutex_name=PROBE_MUTEX,
            task_id=ids.format_id(ids.SERVER_TASK, self.deployment.task["id"]),
            isolation_group=task_isolation_group(self.deployment.task),
            ticket=f"{ticket[:100]}-cache{secrets.token_hex(4)}",
        )
        try:
            outcome = await worker.execute(request, output)
        except Exception as error:
            raise DeployError(f"cannot look into the package cache: {error}") from None
        if outcome.exit_code != 0 or not lines or lines[-1] == "absent":
            return None
        return lines[-1]

    # -- the script ----------------------------------------------------------

    def _variables(self) -> list[DeployVariable]:
        deployment = self.deployment
        task_id = ids.format_id(ids.SERVER_TASK, deployment.task["id"])
        system = [
            DeployVariable("Octopus.Action.Package.PackageId", deployment.package["package_id"]),
            DeployVariable("Octopus.Action.Package.PackageVersion", deployment.package["version"]),
            DeployVariable("Octopus.Task.Id", task_id),
            DeployVariable("Octopus.Machine.Name", self.chosen.name),
        ]
        forced = {variable.name.lower() for variable in system}
        own = [v for v in deployment.variables if v.name.lower() not in forced]
        return own + system

    def _request(self, ticket: str) -> ScriptRequest:
        folder = self.deployment.scratch / ticket
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        password = one_time_password()
        variables = folder / VARIABLES_FILE
        _write_private(variables, encrypted_variables_file(self._variables(), password))
        body = DEPLOY.format(
            variables_file=VARIABLES_FILE,
            remote=shlex.quote(self.deployment.remote),
            shown=shlex.quote(self.deployment.shown).strip("'"),
            marker=f"__tentacle_exit_{secrets.token_hex(8)}=",
            failure_name=base64.b64encode(FAILURE_VARIABLE.encode()).decode("ascii"),
        )
        return ScriptRequest(
            body=body,
            files=[(VARIABLES_FILE, variables)],
            isolation="full",
            task_id=ids.format_id(ids.SERVER_TASK, self.deployment.task["id"]),
            isolation_group=task_isolation_group(self.deployment.task),
            ticket=ticket,
            environment={PASSWORD_VARIABLE: password},
        )

    # -- artifacts -----------------------------------------------------------

    async def _fetch_artifact(
        self, worker: Worker, ticket: str, path: str, name: str, log: StepLog
    ) -> None:
        deployment = self.deployment
        local = deployment.artifacts.incoming()
        try:
            # as the step's group: its script may name only that group's own files
            group = task_isolation_group(deployment.task)
            reply = await worker.download(path, local, None, group)
            async with deployment.store.transaction() as conn:
                step = await fetch_one(
                    conn, sa.select(t.task_steps.c.id).where(t.task_steps.c.ticket == ticket)
                )
                number = await store_packages.add_artifact(
                    conn,
                    {
                        "space_id": deployment.task["space_id"],
                        "task_id": deployment.task["id"],
                        "step_id": step["id"] if step else None,
                        "filename": (name or Path(path).name)[:400],
                        "sha256": str(reply.get("Sha256", "")),
                        "size": local.stat().st_size,
                        "created": deployment.now(),
                    },
                )
                local.replace(deployment.artifacts.path(number))
        except Exception as error:
            with contextlib.suppress(FileNotFoundError):
                local.unlink()
            await log.warning(
                f"the artifact {name or path} ({path}) could not be collected: {error}"
            )
            return
        await log.info(f"Collected the artifact {name} as Artifacts-{number}")


def sweep_scratch(home: Path) -> None:
    """Remove the step files a hub killed mid-step left in ``home`` (encrypted variables
    files); a re-attached step writes new ones if it needs them."""
    shutil.rmtree(home / SCRATCH, ignore_errors=True)


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(data)


class Deployments:
    """The executor of ``Deploy`` tasks."""

    def __init__(
        self,
        store: Store,
        reach: WorkerReach,
        builtin: Worker | None,
        now: Callable[[], datetime],
        repository: Repository,
        key: HubKey,
        artifacts: ArtifactFiles,
    ) -> None:
        self.store = store
        self.workers = StepWorkers(store, reach, builtin)
        self.now = now
        self.repository = repository
        self.key = key
        self.artifacts = artifacts

    async def __call__(self, task: Row, task_log: TaskLog) -> Outcome:
        arguments = task["arguments"]
        try:
            deployment = await self._deployment(task)
        except DeployError as error:
            await task_log.write(None, [("Error", str(error))])
            return Outcome(False, error=str(error))
        parallelism = int(arguments.get("MaxParallelism") or DEFAULT_MAX_PARALLELISM)

        async def choose(conn: AsyncConnection) -> list[ChosenWorker]:
            return await self.workers.choose(task, conn)

        async def moved(refused: ChosenWorker, message: str) -> ChosenWorker:
            return await self.workers.reroute(task, refused, message)

        try:
            results = await run_steps(
                task_log,
                choose,
                self.workers.connect,
                lambda chosen: DeployWork(deployment, chosen),
                parallelism,
                remaining(task, self.now()),
                task_log.cancel,
                moved,
            )
        except Refused as refused:
            await task_log.write(None, [("Error", str(refused))])
            return Outcome(False, error=str(refused))
        finally:
            shutil.rmtree(deployment.scratch, ignore_errors=True)
        return outcome_of(results, arguments.get("Timeout"))

    async def _deployment(self, task: Row) -> Deployment:
        arguments: dict[str, Any] = task["arguments"]
        package_id, version = arguments.get("PackageId"), arguments.get("PackageVersion")
        async with self.store.connect() as conn:
            package = await store_packages.find(
                conn, task["space_id"], str(package_id), str(version)
            )
        if package is None:
            raise DeployError(
                f"the package {package_id} {version} is not in the repository any more"
            )
        if not self.repository.has(package["sha256"]):
            raise DeployError(f"the content of {package_id} {version} is missing from the hub")
        try:
            variables = opened_variables(arguments.get("Variables") or [], self.key)
        except SecretError as error:
            raise DeployError(str(error)) from None
        scratch = self.repository.root.parent / SCRATCH / ids.format_id(ids.SERVER_TASK, task["id"])
        return Deployment(
            task, package, variables, self.repository, self.artifacts, self.store, scratch, self.now
        )
