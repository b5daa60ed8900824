"""Scripts run with variables and helpers: real bash and Python children."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

from agent.calamari.masking import MASK, encoded_forms
from agent.calamari.scripting import ScriptError, run_script
from agent.calamari.service_messages import parse_line
from agent.calamari.variables import Variable, VariableSet

SECRET = "hunter2-Secret"


def variables() -> VariableSet:
    return VariableSet([
        Variable("Name", "World"),
        Variable("Greeting", "Hello #{Name}"),
        Variable("Quote", "it's \"quoted\" $(rm -rf /) `x`"),
        Variable("Password", SECRET, sensitive=True),
        Variable("Octopus.Action.Name", "Step A"),
    ])  # fmt: skip


def run(tmp_path: Path, name: str, body: str, *arguments: str, values: VariableSet | None = None):  # type: ignore[no-untyped-def]
    script = tmp_path / name
    script.write_text(body)
    out: list[str] = []
    err: list[str] = []
    values = values or variables()
    result = run_script(
        script, values, arguments, out=out.append, err=err.append, python=sys.executable
    )
    return result, "".join(out), "".join(err), values


BASH = """
echo "greeting: $(get_octopusvariable Greeting)"
echo "quote: $(get_octopusvariable Quote)"
echo "missing: [$(get_octopusvariable Nope)]"
echo "template: #{Name | ToUpper}"
echo "args: $1 $2"
echo "password: $(get_octopusvariable Password)"
echo "$(get_octopusvariable Password)" | base64
set_octopusvariable Version 1.2.3
set_octopusvariable Token "tok-en-value" -sensitive
echo "token: tok-en-value"
echo oops >&2
touch report.txt
new_octopusartifact report.txt Report
update_progress 50 "half way"
fail_step "it went wrong"
echo "never printed"
"""

PYTHON = """
import sys
print("greeting:", get_octopusvariable("Greeting"))
print("quote:", get_octopusvariable("Quote"))
print("missing: [" + get_octopusvariable("Nope") + "]")
print("template: #{Name | ToUpper}")
print("args:", *sys.argv[1:])
print("password:", get_octopusvariable("Password"))
set_octopusvariable("Version", "1.2.3")
set_octopusvariable("Token", "tok-en-value", sensitive=True)
print("token: tok-en-value")
print("oops", file=sys.stderr)
open("report.txt", "w").close()
new_octopusartifact("report.txt", "Report")
update_progress(50, "half way")
fail_step("it went wrong")
print("never printed")
"""


@pytest.mark.parametrize(("name", "body"), [("deploy.sh", BASH), ("deploy.py", PYTHON)])
def test_helpers_variables_and_masking(tmp_path: Path, name: str, body: str) -> None:
    result, out, err, values = run(tmp_path, name, body, "one", "two words")
    assert result.exit_code == 1
    assert result.result_message == "it went wrong"
    assert "greeting: Hello World\n" in out
    assert 'quote: it\'s "quoted" $(rm -rf /) `x`\n' in out
    assert "missing: []\n" in out
    assert "template: WORLD\n" in out
    assert "args: one two words\n" in out
    assert f"password: {MASK}\n" in out
    assert "token: " + MASK in out  # masked once the script declared it sensitive
    assert SECRET not in out + err
    assert base64.b64encode(SECRET.encode()).decode()[:8] not in out
    assert "tok-en-value" not in out + err
    assert "never printed" not in out
    assert "oops" in err
    assert result.outputs == {"Version": ("1.2.3", False), "Token": ("tok-en-value", True)}
    assert values.get("Octopus.Action[Step A].Output.Version") == "1.2.3"
    assert result.artifacts == [(str(tmp_path / "report.txt"), "Report")]
    assert "##octopus[progress" in out


def test_the_exit_code_and_error_output_policy(tmp_path: Path) -> None:
    result, *_ = run(tmp_path, "ok.sh", "echo fine; exit 0")
    assert result.exit_code == 0
    result, *_ = run(tmp_path, "three.sh", "exit 3")
    assert result.exit_code == 3
    strict = variables()
    strict.set("Octopus.Action.FailScriptOnErrorOutput", "True")
    result, _, err, _ = run(tmp_path, "noisy.sh", "echo warning >&2; exit 0", values=strict)
    assert result.exit_code == 1
    assert "FailScriptOnErrorOutput" in err


def test_a_secret_masked_by_a_mask_message(tmp_path: Path) -> None:
    body = """printf "##octopus[mask value='%s']\\n" "$(printf %s late-secret | base64)"
echo late-secret"""
    _, out, _, _ = run(tmp_path, "mask.sh", body)
    assert "late-secret" not in out
    assert out.count(MASK) >= 1


def test_unknown_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="cannot tell how to run"):
        run(tmp_path, "deploy.ps1", "Write-Host hi")


def test_service_messages_about_a_secret_stay_parseable_and_hide_it(tmp_path: Path) -> None:
    body = (
        "SECRET=$(get_octopusvariable Password)\n"
        'set_octopusvariable "Echo" "$SECRET"\n'
        'set_octopusvariable "$SECRET" "x"\n'
        "touch report.txt\n"
        'new_octopusartifact report.txt "$SECRET"\n'
    )
    result, out, err, values = run(tmp_path, "secret.sh", body)
    assert result.exit_code == 0, err
    assert not [form for form in encoded_forms(SECRET) if form in out + err]
    messages = [parse_line(line) for line in out.splitlines()]
    assert None not in messages, out  # every line is a well-formed message
    echo, named, artifact = (message for message in messages if message is not None)
    assert (echo.name, echo.attributes) == (
        "setVariable",
        {"name": "Echo", "value": MASK, "sensitive": "True"},
    )
    assert (named.name, named.attributes) == ("setVariable", {"name": MASK, "value": "x"})
    assert artifact.name == "createArtifact"
    assert artifact.attributes["path"] == str(tmp_path / "report.txt")
    assert artifact.attributes["name"] == MASK
    # the executor acted on the real values: the output variable is kept, and sensitive
    assert result.outputs["Echo"] == (SECRET, True)
    assert values.get("Octopus.Action[Step A].Output.Echo") == SECRET
    assert result.artifacts == [(str(tmp_path / "report.txt"), SECRET)]


def test_a_value_holding_a_secret_is_not_in_the_private_folder_either(tmp_path: Path) -> None:
    body = (
        "import base64, pathlib\n"
        "folder = pathlib.Path(__file__).parent\n"
        "data = b''.join(p.read_bytes() for p in folder.iterdir() if p.is_file())\n"
        "secret = get_octopusvariable('Password').encode()\n"
        "forms = [secret, base64.b64encode(secret).rstrip(b'=')]\n"
        "print('in files:', [f for f in forms if f in data])\n"
        "print('derived ok:', get_octopusvariable('Login') == 'admin:' + secret.decode())\n"
    )
    values = variables()
    values.set("Login", "admin:#{Password}")
    result, out, err, _ = run(tmp_path, "look.py", body, values=values)
    assert result.exit_code == 0, err
    assert "in files: []\n" in out
    assert "derived ok: True\n" in out
