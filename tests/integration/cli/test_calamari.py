"""`tentacle calamari …` from the command line."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.helpers.cli import TentacleCli


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_extract_package(tentacle: TentacleCli, tmp_path: Path) -> None:
    package = make_zip(tmp_path / "App.1.0.0.zip", {"app.conf": b"x", "bin/run": b"y"})
    result = tentacle.ok("calamari", "extract-package", "--package", str(package),
                         "--destination", str(tmp_path / "out"), "--format", "json")  # fmt: skip
    assert result.json() == {"Destination": str(tmp_path / "out"), "ExtractedFileCount": 2}
    assert (tmp_path / "out" / "bin" / "run").read_bytes() == b"y"


def test_an_unsafe_package_is_refused_with_the_entry_named(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    package = make_zip(tmp_path / "evil.zip", {"ok": b"x", "../escape": b"y"})
    result = tentacle.fails("calamari", "extract-package", "--package", str(package),
                            "--destination", str(tmp_path / "out"))  # fmt: skip
    assert "entry '../escape' lands outside the destination" in result.err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape").exists()


def test_a_tar_whose_links_escape_together_is_one_line_refusal(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    import tarfile

    package = tmp_path / "pair.tar"
    with tarfile.open(package, "w") as archive:
        for name, target in (("l1", "."), ("l1/l2", "..")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            archive.addfile(link)
    result = tentacle.fails("calamari", "extract-package", "--package", str(package),
                            "--destination", str(tmp_path / "out"))  # fmt: skip
    assert result.err == "error: entry 'l1/l2' leads outside the destination through a link\n"
    assert not (tmp_path / "out").exists()


def test_run_script(tentacle: TentacleCli, tmp_path: Path) -> None:
    import json
    import stat

    from agent.calamari.service_messages import parse_line

    script = tmp_path / "step.sh"
    script.write_text('echo "#{Greeting}, $1"\n'
                      'set_octopusvariable Key "$(get_octopusvariable Password)" -sensitive\n'
                      "echo $(get_octopusvariable Password); exit 4\n")  # fmt: skip
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps([
        {"name": "Greeting", "value": "Hello"},
        {"name": "Password", "value": "pa55word", "sensitive": True},
    ]))  # fmt: skip
    outputs = tmp_path / "outputs.json"
    result = tentacle.run("calamari", "run-script", "--script", str(script),
                          "--variables", str(variables), "--output-variables", str(outputs),
                          "--", "world")  # fmt: skip
    assert result.code == 4
    lines = result.out.splitlines()
    assert lines[0] == "Hello, world"
    assert "pa55word" not in result.out + result.err
    assert parse_line(lines[-1]).attributes == {
        "name": "Octopus.Action.Script.ExitCode",
        "value": "4",
    }
    assert json.loads(outputs.read_text()) == [
        {"name": "Key", "value": "pa55word", "sensitive": True}
    ]
    assert stat.S_IMODE(outputs.stat().st_mode) == 0o600


def test_deploy_package(tentacle: TentacleCli, tmp_path: Path) -> None:
    import json

    package = make_zip(tmp_path / "Acme.Web.2.1.0.zip", {
        "app.conf": b"port=#{Port}\n",
        "Deploy.sh": b'echo "deploying in $PWD"\n',
    })  # fmt: skip
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps([
        {"name": "Port", "value": "9000"},
        {"name": "Octopus.Action.SubstituteInFiles.TargetFiles", "value": "*.conf"},
        {"name": "Octopus.Action.EnabledFeatures", "value": "Octopus.Features.SubstituteInFiles"},
    ]))  # fmt: skip
    apps = tmp_path / "apps"
    result = tentacle.ok("calamari", "deploy-package", "--package", str(package),
                         "--variables", str(variables), "--install-dir", str(apps))  # fmt: skip
    folder = apps / "Acme.Web" / "2.1.0"
    assert f"deploying in {folder}" in result.out
    assert result.out.splitlines()[-1] == f"Deployed Acme.Web 2.1.0 to {folder}"
    assert (folder / "app.conf").read_text() == "port=9000\n"
    failing = make_zip(tmp_path / "Acme.Web.2.2.0.zip", {
        "Deploy.sh": b'fail_step "cannot log in with $(get_octopusvariable Password)"\n',
    })  # fmt: skip
    variables.write_text(json.dumps([{"name": "Password", "value": "hunter2", "sensitive": True}]))
    result = tentacle.fails("calamari", "deploy-package", "--package", str(failing),
                            "--variables", str(variables), "--install-dir", str(apps))  # fmt: skip
    assert (
        "deployment failed: Deploy.sh returned exit code 1: cannot log in with ********"
        in result.err
    )
    assert "hunter2" not in result.out + result.err


def test_deploy_package_with_the_features_off_leaves_the_files_as_they_are(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    import json

    files = {"app.conf": b"port=#{Port}\r\n", "app.json": b'{"Port": 1}'}
    package = make_zip(tmp_path / "Acme.Web.3.0.0.zip", files)
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps([
        {"name": "Port", "value": "9000"},
        {"name": "Octopus.Action.SubstituteInFiles.TargetFiles", "value": "*.conf"},
        {"name": "Octopus.Action.Package.JsonConfigurationVariablesTargets", "value": "*.json"},
        {"name": "Octopus.Action.EnabledFeatures", "value": "Octopus.Features.CustomScripts"},
    ]))  # fmt: skip
    apps = tmp_path / "apps"
    tentacle.ok("calamari", "deploy-package", "--package", str(package),
                "--variables", str(variables), "--install-dir", str(apps))  # fmt: skip
    folder = apps / "Acme.Web" / "3.0.0"
    assert {name: (folder / name).read_bytes() for name in files} == files


def test_an_encrypted_variables_file_takes_its_password_from_the_environment(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    import json

    from tests.unit.calamari.test_variables import encrypt

    variables = tmp_path / "variables.secret"
    document = [{"name": "Greeting", "value": "hi from an encrypted file"}]
    variables.write_bytes(encrypt(json.dumps(document).encode(), "s3same"))
    script = tmp_path / "step.sh"
    script.write_text(
        'echo "#{Greeting}"; echo "password in env: [${TENTACLE_VARIABLES_PASSWORD:-}]"\n'
    )
    args = ("calamari", "run-script", "--script", str(script), "--variables", str(variables))
    result = tentacle.run(*args, env={"TENTACLE_VARIABLES_PASSWORD": "s3same"})
    assert result.code == 0, result.err
    assert result.out.splitlines()[:2] == ["hi from an encrypted file", "password in env: []"]
    missing = tentacle.fails(*args)
    assert "a password is needed (set TENTACLE_VARIABLES_PASSWORD)" in missing.err


def test_deploy_package_defaults_to_the_agents_applications_folder(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    package = make_zip(tmp_path / "Tool.0.1.0.zip", {"a.txt": b"a"})
    agents = tmp_path / "agent-applications"
    result = tentacle.ok("calamari", "deploy-package", "--package", str(package),
                         env={"TentacleApplications": str(agents),
                              "TentacleJournal": str(tmp_path / "journal.json")})  # fmt: skip
    assert result.out.splitlines()[-1] == f"Deployed Tool 0.1.0 to {agents / 'Tool' / '0.1.0'}"
    assert (tmp_path / "journal.json").exists()


def test_a_mistyped_option_is_an_error_not_a_script_argument(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    script = tmp_path / "args.sh"
    script.write_text('echo "args: $*"\n')
    variables = tmp_path / "variables.json"
    variables.write_text("[]")
    typo = tentacle.fails("calamari", "run-script", "--script", str(script),
                          "--variabels", str(variables), code=2)  # fmt: skip
    assert typo.err.splitlines()[-1].startswith("error: No such option '--variabels'")
    passed = tentacle.ok("calamari", "run-script", "--script", str(script), "--",
                         "--variabels", "-x", "two words")  # fmt: skip
    assert passed.out.splitlines()[0] == "args: --variabels -x two words"
