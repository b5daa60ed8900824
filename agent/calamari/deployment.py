"""Deploying a package by Octopus's conventions.

Extract into a new folder ``<applications>/<PackageId>/<Version>`` (``_1``,
``_2``… when it exists), then run in order: the package's PreDeploy script,
substitution in files, structured configuration variables, Deploy, PostDeploy.
When a step fails, DeployFailed runs and the deployment fails. Each deployment
goes into a journal, and old ones beyond the retention count are removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.calamari import structured
from agent.calamari.globs import GLOB_CHARACTERS, matching_files, target_lines
from agent.calamari.journal import Deployment, Journal
from agent.calamari.packages import TAR_SUFFIXES, ZIP_SUFFIXES, PackageError, extract
from agent.calamari.scripting import ScriptError, run_script
from agent.calamari.service_messages import format_message
from agent.calamari.substitution import OUTPUT_ENCODING, substitute_file
from agent.calamari.templates import TemplateError
from agent.calamari.variables import VariableSet

Write = Callable[[str], None]
STAGES = ("PreDeploy", "Deploy", "PostDeploy")
SCRIPT_PREFERENCE = (".sh", ".py")  # Linux's order, as Calamari's
ENABLED_FEATURES = "Octopus.Action.EnabledFeatures"
SUBSTITUTE_FEATURE = "Octopus.Features.SubstituteInFiles"
STRUCTURED_FEATURE = "Octopus.Features.JsonConfigurationVariables"
SUBSTITUTE_TARGETS = "Octopus.Action.SubstituteInFiles.TargetFiles"
NO_MATCH_WARNING = "Octopus.Action.SubstituteInFiles.EnableNoMatchWarning"
STRUCTURED_TARGETS = (
    "Octopus.Action.Package.JsonConfigurationVariablesTargets",  # Octopus's
    "Octopus.Action.StructuredConfigurationVariables.Targets",  # our alias (docs)
)
STRUCTURED_FALLBACK = "Octopus.Action.StructuredConfigurationFallbackFlag"
_LEGACY_NAME = re.compile(
    r"(?P<id>.+?)\.(?P<version>\d+(?:\.\d+)*(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)"
)


class DeploymentError(Exception):
    """The deployment failed; the message says at which step and why."""


@dataclass(frozen=True)
class Installed:
    package_id: str
    version: str
    folder: Path
    deleted: tuple[str, ...]  # old installations removed by retention


def package_identity(package: Path) -> tuple[str, str]:
    """(PackageId, Version) from ``Id@Version@hash.ext`` or ``Id.1.2.3.ext``.

    Raises DeploymentError when the name holds no version.
    """
    name = package.name
    for suffix in sorted((*ZIP_SUFFIXES, *TAR_SUFFIXES), key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.count("@") == 2:
        package_id, version, _ = name.split("@")
        return package_id, version
    match = _LEGACY_NAME.fullmatch(name)
    if match is None:
        raise DeploymentError(
            f"{package.name}: expected a name like Id.1.2.3.zip or Id@1.2.3@hash.zip"
        )
    return match["id"], match["version"]


def new_folder(root: Path, variables: VariableSet, package_id: str, version: str) -> Path:
    """A folder that does not exist yet, for this installation."""
    base = root
    for name in ("Octopus.Deployment.Tenant.Name", "Octopus.Environment.Name"):
        value = variables.get(name)
        if value:
            base = base / _safe(value)
    base = base / _safe(package_id) / _safe(version)
    folder, attempt = base, 0
    while folder.exists():
        attempt += 1
        folder = base.with_name(f"{base.name}_{attempt}")
    return folder


def _safe(part: str) -> str:
    cleaned = re.sub(r"[^\w.@+-]", "_", part).strip(".")
    return cleaned or "_"


class Deployer:
    def __init__(
        self,
        variables: VariableSet,
        out: Write,
        err: Write,
        python: str = "python3",
        environment: Mapping[str, str] | None = None,
    ) -> None:
        """``environment``: what the package's scripts get instead of the inherited one."""
        self.variables, self.out, self.err, self.python = variables, out, err, python
        self.environment = environment

    def deploy(self, package: Path, root: Path, journal: Journal, keep: int | None) -> Installed:
        """Install ``package`` under ``root``. Raises DeploymentError (after DeployFailed ran)."""
        package_id = (
            self.variables.get("Octopus.Action.Package.PackageId") or package_identity(package)[0]
        )
        version = (
            self.variables.get("Octopus.Action.Package.PackageVersion")
            or package_identity(package)[1]
        )
        folder = new_folder(root, self.variables, package_id, version)
        self.out(f"Extracting {package.name} to {folder}\n")
        try:
            count = extract(package, folder)
        except PackageError as error:
            raise DeploymentError(f"extracting {package.name}: {error}") from None
        self._outputs(folder, count)
        policy = self.variables.get("OctopusRetentionPolicySet") or package_id
        try:
            self._conventions(folder)
        except (DeploymentError, TemplateError) as error:
            self._run_stage(folder, "DeployFailed", failing=True)
            journal.add(Deployment.new(package_id, version, folder, False, policy))
            raise DeploymentError(str(error)) from None
        current = Deployment.new(package_id, version, folder, True, policy)
        journal.add(current)
        deleted = journal.apply_retention(policy, keep, current) if keep else []
        for path in deleted:
            self.out(f"Removed an old installation: {path}\n")
        return Installed(package_id, version, folder, tuple(deleted))

    def _outputs(self, folder: Path, count: int) -> None:
        for name, value in (("Octopus.Action.Package.InstallationDirectoryPath", str(folder)),
                            ("Package.InstallationDirectoryPath", str(folder)),
                            ("Package.ExtractedFileCount", str(count))):  # fmt: skip
            self.variables.set_output(name, value)
            self.out(format_message("setVariable", {"name": name, "value": value}) + "\n")
        self.variables.set("OctopusOriginalPackageDirectoryPath", str(folder))

    def _conventions(self, folder: Path) -> None:
        self._run_stage(folder, "PreDeploy")
        self._substitute(folder)
        self._structured(folder)
        self._run_stage(folder, "Deploy")
        self._run_stage(folder, "PostDeploy")

    def _run_stage(self, folder: Path, stage: str, *, failing: bool = False) -> None:
        script = _stage_script(folder, stage)
        if script is None or not self.variables.flag("Octopus.Action.Package.RunScripts", True):
            return
        self.out(f"Running {script.name}\n")
        try:
            result = run_script(
                script,
                self.variables,
                out=self.out,
                err=self.err,
                python=self.python,
                environment=self.environment,
            )
        except ScriptError as error:
            if failing:
                self.err(f"{stage}: {error}\n")
                return
            raise DeploymentError(f"{stage}: {error}") from None
        if result.exit_code != 0 and not failing:
            detail = f": {result.result_message}" if result.result_message else ""
            raise DeploymentError(f"{script.name} returned exit code {result.exit_code}{detail}")

    def enabled(self, feature: str) -> bool:
        """Whether ``Octopus.Action.EnabledFeatures`` (comma-separated) lists ``feature``."""
        listed = (self.variables.get(ENABLED_FEATURES) or "").split(",")
        return feature in (name.strip() for name in listed)

    def _warn(self, text: str) -> None:
        self.err(f"warning: {text}\n")

    def _substitute(self, folder: Path) -> None:
        if not self.enabled(SUBSTITUTE_FEATURE):
            return
        encoding = self.variables.get(OUTPUT_ENCODING)
        for target in target_lines(self.variables.get(SUBSTITUTE_TARGETS) or ""):
            files = list(matching_files(folder, [target]))
            if not files and self.variables.flag(NO_MATCH_WARNING, True):
                self._warn(
                    f"No files were found in {folder} that match the substitution target "
                    f"pattern '{target}'"
                )
            for path in files:
                self.out(f"Substituting variables in {path.relative_to(folder)}\n")
                error = substitute_file(path, self.variables.as_mapping(), self._warn, encoding)
                if error:
                    self.out(f"  {error}\n")

    def _structured(self, folder: Path) -> None:
        if not self.enabled(STRUCTURED_FEATURE):
            return
        values = self.variables.evaluated()
        fallback = self.variables.flag(STRUCTURED_FALLBACK)
        for name in STRUCTURED_TARGETS:
            for target in target_lines(self.variables.get(name) or "", ";"):
                self._structured_target(folder, target, values, fallback)

    def _structured_target(
        self, folder: Path, target: str, values: Mapping[str, str | None], fallback: bool
    ) -> None:
        literal = not GLOB_CHARACTERS & set(target)
        if literal and (folder / target.replace("\\", "/")).is_dir():
            self._warn(
                f"Skipping structured variable replacement on '{target}' because it is a directory."
            )
            return
        files = list(matching_files(folder, [target]))
        if not files:
            self._warn(f"No files were found that match the replacement target pattern '{target}'")
        for path in files:
            try:
                kind = structured.update_file(path, values, self._warn, fallback=fallback)
            except structured.StructuredError as error:
                raise DeploymentError(str(error)) from None
            self.out(
                f"Structured variable replacement succeeded on file {path.relative_to(folder)} "
                f"with format {kind}\n"
            )


def _stage_script(folder: Path, stage: str) -> Path | None:
    """The package's ``<stage>.sh`` or ``<stage>.py`` (any case), by Linux's preference."""
    candidates = {path.name.lower(): path for path in folder.iterdir() if path.is_file()}
    for suffix in SCRIPT_PREFERENCE:
        found = candidates.get(f"{stage.lower()}{suffix}")
        if found is not None:
            return found
    return None
