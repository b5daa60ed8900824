"""Deploying packages: the conventions in order, the failure path, files, structured
variables, retention."""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from agent.calamari.deployment import Deployer, DeploymentError, Installed, package_identity
from agent.calamari.journal import Journal
from agent.calamari.variables import Variable, VariableSet

APPSETTINGS = {
    "Logging": {"LogLevel": {"Default": "Warning"}},
    "Port": 80,
    "Debug": True,
    "Servers": [{"Host": "old-1"}, {"Host": "old-2"}],
    "Features": ["a"],
    "OctopusLeftAlone": "x",
}


# both file features on, as Octopus turns them on for a step
FEATURES = Variable(
    "Octopus.Action.EnabledFeatures",
    "Octopus.Features.SubstituteInFiles, Octopus.Features.JsonConfigurationVariables",
)


def package(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return path


def stage(name: str, marker: Path, exit_code: int = 0) -> str:
    return f'echo "{name}" >> {marker}; echo "{name} in $(pwd)"; exit {exit_code}\n'


@dataclass
class Run:
    installed: Installed
    out: str
    err: str
    journal: Journal


def deploy(tmp_path: Path, pkg: Path, variables: VariableSet, keep: int | None = None) -> Run:
    out: list[str] = []
    err: list[str] = []
    deployer = Deployer(variables, out.append, err.append, python=sys.executable)
    journal = Journal(tmp_path / "apps" / "journal.json")
    installed = deployer.deploy(pkg, tmp_path / "apps", journal, keep)
    return Run(installed, "".join(out), "".join(err), journal)


def test_names_give_the_package_id_and_version() -> None:
    assert package_identity(Path("Acme.Web.1.2.3.zip")) == ("Acme.Web", "1.2.3")
    assert package_identity(Path("Acme.2Web.1.0-beta.1.tar.gz")) == ("Acme.2Web", "1.0-beta.1")
    assert package_identity(Path("Acme@2.0.0@0123456789abcdef0123456789abcdef.nupkg")) == (
        "Acme",
        "2.0.0",
    )
    with pytest.raises(DeploymentError, match="expected a name like"):
        package_identity(Path("noversion.zip"))


def test_conventions_run_in_order_on_a_new_versioned_folder(tmp_path: Path) -> None:
    marker = tmp_path / "order.txt"
    files = {
        "PreDeploy.sh": stage("PreDeploy", marker),
        "deploy.py": f"open({str(marker)!r}, 'a').write('Deploy\\n')\n",  # any case, Python too
        "PostDeploy.sh": stage("PostDeploy", marker) + "",
        "config/app.conf": "port=#{Port}\nenv=#{Octopus.Environment.Name}\nunknown=#{Nope}\n",
        "config/appsettings.json": json.dumps(APPSETTINGS),
        "config/settings.yaml": yaml.safe_dump({"Db": {"Host": "old", "Port": 1}, "List": [1, 2]}),
        "untouched.conf": "#{Port}",
    }
    variables = VariableSet([
        FEATURES,
        Variable("Port", "8080"),
        Variable("Octopus.Environment.Name", "Production"),
        Variable("Octopus.Action.SubstituteInFiles.TargetFiles", "config/*.conf\n**/*.{txt,md}"),
        Variable("Octopus.Action.StructuredConfigurationVariables.Targets",
                 "config/*.json\nconfig/*.yaml"),
        Variable("Logging:LogLevel:Default", "Debug"),
        Variable("Debug", "false"),
        Variable("Servers:1:Host", "new-2"),
        Variable("Features", '["x", "y"]'),
        Variable("OctopusLeftAlone", "changed"),
        Variable("Db:Port", "5432"),
        Variable("List", "[3]"),
    ])  # fmt: skip
    pkg = package(tmp_path, "Acme.Web.1.0.0.zip", files)
    run = deploy(tmp_path, pkg, variables)
    installed, out, journal = run.installed, run.out, run.journal
    assert installed.folder == tmp_path / "apps" / "Production" / "Acme.Web" / "1.0.0"
    assert marker.read_text() == "PreDeploy\nDeploy\nPostDeploy\n"
    assert f"PreDeploy in {installed.folder}" in out
    conf = (installed.folder / "config" / "app.conf").read_text()
    assert conf == "port=8080\nenv=Production\nunknown=#{Nope}\n"
    assert (installed.folder / "untouched.conf").read_text() == "#{Port}"
    settings = json.loads((installed.folder / "config" / "appsettings.json").read_text())
    assert settings == {
        "Logging": {"LogLevel": {"Default": "Debug"}},
        "Port": 8080,  # still a number
        "Debug": False,  # still a boolean
        "Servers": [{"Host": "old-1"}, {"Host": "new-2"}],
        "Features": ["x", "y"],
        "OctopusLeftAlone": "x",
    }
    assert yaml.safe_load((installed.folder / "config" / "settings.yaml").read_text()) == {
        "Db": {"Host": "old", "Port": 5432}, "List": [3]}  # fmt: skip
    assert variables.get("Octopus.Action.Package.InstallationDirectoryPath") == str(
        installed.folder
    )
    [entry] = journal.entries()
    assert (entry.PackageId, entry.PackageVersion, entry.WasSuccessful) == (
        "Acme.Web",
        "1.0.0",
        True,
    )
    # the same version again goes to a new folder, never over the old one
    assert deploy(tmp_path, pkg, variables).installed.folder.name == "1.0.0_1"


def test_a_failing_step_runs_deploy_failed_and_is_journaled(tmp_path: Path) -> None:
    marker = tmp_path / "order.txt"
    files = {
        "PreDeploy.sh": stage("PreDeploy", marker),
        "Deploy.sh": f'echo Deploy >> {marker}; fail_step "database is down"\n',
        "PostDeploy.sh": stage("PostDeploy", marker),
        "DeployFailed.sh": stage("DeployFailed", marker),
    }
    pkg = package(tmp_path, "Acme.Api.2.0.0.zip", files)
    with pytest.raises(DeploymentError, match="Deploy.sh returned exit code 1: database is down"):
        deploy(tmp_path, pkg, VariableSet())
    assert marker.read_text() == "PreDeploy\nDeploy\nDeployFailed\n"
    [entry] = Journal(tmp_path / "apps" / "journal.json").entries()
    assert entry.WasSuccessful is False


def test_bad_structured_files_fail_the_deployment_and_bad_values_warn(tmp_path: Path) -> None:
    variables = VariableSet([
        FEATURES,
        Variable("Octopus.Action.StructuredConfigurationVariables.Targets", "*.json"),
        Variable("Servers", "not json"),
    ])  # fmt: skip
    pkg = package(tmp_path, "A.1.0.0.zip", {"ok.json": json.dumps(APPSETTINGS)})
    run = deploy(tmp_path, pkg, variables)
    assert "Unable to set value for Servers: the value is not valid JSON" in run.err
    assert (
        json.loads((run.installed.folder / "ok.json").read_text())["Servers"]
        == APPSETTINGS["Servers"]
    )
    broken = package(tmp_path, "B.1.0.0.zip", {"bad.json": "{nope"})
    with pytest.raises(DeploymentError, match=r"bad.json. The file could not be parsed as JSON"):
        deploy(tmp_path, broken, variables)


def test_retention_keeps_the_newest_successful_deployments(tmp_path: Path) -> None:
    folders = []
    for number in range(1, 5):
        pkg = package(tmp_path, f"Acme.Web.1.0.{number}.zip", {"app.txt": str(number)})
        run = deploy(tmp_path, pkg, VariableSet(), keep=2)
        folders.append(run.installed.folder)
    assert [folder.exists() for folder in folders] == [False, False, True, True]
    assert [entry.PackageVersion for entry in run.journal.entries()] == ["1.0.3", "1.0.4"]


def test_a_self_referencing_variable_fails_the_deployment_clearly(tmp_path: Path) -> None:
    variables = VariableSet([
        FEATURES,
        Variable("Octopus.Action.SubstituteInFiles.TargetFiles", "*.conf"),
        Variable("Loop", "#{Loop}"),
    ])  # fmt: skip
    pkg = package(tmp_path, "A.1.0.0.zip", {"a.conf": "#{Loop}"})
    with pytest.raises(DeploymentError, match="self referencing loop"):
        deploy(tmp_path, pkg, variables)


def test_files_keep_their_byte_order_mark_and_line_endings(tmp_path: Path) -> None:
    bom = "\ufeff"
    files = {"a.conf": bom + "port=#{Port}\r\nhost=x\r\n", "b.json": bom + '{\r\n "Port": 1\r\n}'}
    variables = VariableSet([
        FEATURES,
        Variable("Port", "9"),
        Variable("Octopus.Action.SubstituteInFiles.TargetFiles", "*.conf"),
        Variable("Octopus.Action.StructuredConfigurationVariables.Targets", "*.json"),
    ])  # fmt: skip
    folder = deploy(tmp_path, package(tmp_path, "A.1.0.0.zip", files), variables).installed.folder
    assert (folder / "a.conf").read_bytes() == b"\xef\xbb\xbfport=9\r\nhost=x\r\n"
    assert (folder / "b.json").read_bytes() == b'\xef\xbb\xbf{\r\n  "Port": 9\r\n}'


FEATURE_FILES = {"app.conf": "port=#{Port}\n", "config/app.json": '{"Port": 1}'}
SWITCH_TARGETS = [
    Variable("Port", "9"),
    Variable("Octopus.Action.SubstituteInFiles.TargetFiles", "*.conf"),
    Variable("Octopus.Action.Package.JsonConfigurationVariablesTargets", "config/*.json"),
]


@pytest.mark.parametrize(
    ("features", "conf", "json_text"),
    [
        # SubstituteInFilesBehaviour / StructuredConfigurationVariablesBehaviour.IsEnabled:
        # each runs only when Octopus.Action.EnabledFeatures lists its feature
        (None, "port=#{Port}\n", '{"Port": 1}'),
        ("", "port=#{Port}\n", '{"Port": 1}'),
        ("Octopus.Features.SubstituteInFiles", "port=9\n", '{"Port": 1}'),
        ("Octopus.Features.JsonConfigurationVariables", "port=#{Port}\n", '{\n  "Port": 9\n}'),
        (" Octopus.Features.JsonConfigurationVariables ,Octopus.Features.SubstituteInFiles",
         "port=9\n", '{\n  "Port": 9\n}'),
        ("octopus.features.substituteinfiles", "port=#{Port}\n", '{"Port": 1}'),  # exact names
    ],
)  # fmt: skip
def test_the_features_switch_substitution_and_structured_variables(
    tmp_path: Path, features: str | None, conf: str, json_text: str
) -> None:
    listed = [Variable("Octopus.Action.EnabledFeatures", features)] if features is not None else []
    variables = VariableSet([*listed, *SWITCH_TARGETS])
    folder = deploy(tmp_path, package(tmp_path, "A.1.0.0.zip", FEATURE_FILES), variables)
    assert (folder.installed.folder / "app.conf").read_text() == conf
    assert (folder.installed.folder / "config" / "app.json").read_text() == json_text


def test_structured_targets_folders_and_misses_warn(tmp_path: Path) -> None:
    files = {"config/a.json": '{"Port": 1}', "b.json": '{"Port": 2}', "c.yaml": "Port: 3\n"}
    variables = VariableSet([
        FEATURES,
        Variable("Port", "9"),
        # Octopus's targets are newline- or semicolon-separated; ours (the alias) too
        Variable("Octopus.Action.Package.JsonConfigurationVariablesTargets",
                 ".\nconfig\nb.json;missing/*.json"),
        Variable("Octopus.Action.StructuredConfigurationVariables.Targets", "**/a.json"),
        Variable("Octopus.Action.SubstituteInFiles.TargetFiles", "nothing.conf"),
    ])  # fmt: skip
    run = deploy(tmp_path, package(tmp_path, "A.1.0.0.zip", files), variables)
    folder = run.installed.folder
    assert "Skipping structured variable replacement on '.' because it is a directory." in run.err
    assert "Skipping structured variable replacement on 'config' because it is a directory" in (
        run.err
    )
    assert "No files were found that match the replacement target pattern 'missing/*.json'" in (
        run.err
    )
    assert f"No files were found in {folder} that match the substitution target pattern" in (
        run.err
    )
    assert (folder / "b.json").read_text() == '{\n  "Port": 9\n}'
    assert (folder / "config" / "a.json").read_text() == '{\n  "Port": 9\n}'
    assert (folder / "c.yaml").read_text() == "Port: 3\n"
    assert "Structured variable replacement succeeded on file b.json with format JSON" in run.out
    quiet = VariableSet([
        *variables, Variable("Octopus.Action.SubstituteInFiles.EnableNoMatchWarning", "False")
    ])  # fmt: skip
    assert "substitution target" not in deploy(tmp_path, package(tmp_path, "B.1.0.0.zip", files),
                                               quiet).err  # fmt: skip


def test_the_fallback_flag_and_the_output_encoding_reach_the_files(tmp_path: Path) -> None:
    files = {"a.yaml": "Port: 3\n", "a.conf": "n=#{Name}\n"}
    variables = VariableSet([
        FEATURES,
        Variable("Name", "Zoë"),
        Variable("Octopus.Action.SubstituteInFiles.TargetFiles", "a.conf"),
        Variable("Octopus.Action.SubstituteInFiles.OutputEncoding", "utf-16"),
        Variable("Octopus.Action.Package.JsonConfigurationVariablesTargets", "a.yaml"),
        Variable("Octopus.Action.StructuredConfigurationFallbackFlag", "True"),
    ])  # fmt: skip
    with pytest.raises(DeploymentError, match="could not be parsed as JSON"):
        deploy(tmp_path, package(tmp_path, "A.1.0.0.zip", files), variables)
    folder = tmp_path / "apps" / "A" / "1.0.0"
    assert (folder / "a.conf").read_bytes() == b"\xff\xfe" + "n=Zoë\n".encode("utf-16-le")
    assert (folder / "a.yaml").read_text() == "Port: 3\n"


def test_a_package_step_replaces_xml_by_xpath_and_refuses_entities(tmp_path: Path) -> None:
    files = {
        "Web.config": '<configuration>\n  <appSettings>\n    <add key="Port" value="80"/>\n'
        "  </appSettings>\n</configuration>\n",
        "lolz.xml": '<!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>',
    }
    variables = VariableSet([
        FEATURES,
        Variable("Port", "9090"),
        Variable("Octopus.Action.Package.JsonConfigurationVariablesTargets", "*.config"),
        Variable("//appSettings/add[@key='Port']/@value", "#{Port}"),  # values are evaluated
    ])  # fmt: skip
    run = deploy(tmp_path, package(tmp_path, "A.1.0.0.zip", files), variables)
    assert (run.installed.folder / "Web.config").read_bytes() == (
        b'<configuration>\n  <appSettings>\n    <add key="Port" value="9090" />\n'
        b"  </appSettings>\n</configuration>"
    )
    assert "succeeded on file Web.config with format XML" in run.out
    refused = VariableSet([
        *variables, Variable("Octopus.Action.StructuredConfigurationVariables.Targets", "*.xml")
    ])  # fmt: skip
    with pytest.raises(DeploymentError, match=r"refused file .*lolz.xml: the document declares "
                       r"the entity 'x'"):  # fmt: skip
        deploy(tmp_path, package(tmp_path, "B.1.0.0.zip", files), refused)
