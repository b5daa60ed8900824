"""Running a user's script with the deployment's variables and helper functions.

The script (bash, sh or Python, by extension) first has its ``#{…}`` templates
substituted (leniently), then runs from its own folder with helpers defined:
``get_octopusvariable``, ``set_octopusvariable NAME VALUE [-sensitive]``,
``new_octopusartifact PATH [NAME]``, ``fail_step MESSAGE``, ``update_progress
PERCENT [MESSAGE]`` (Python: the same names, plus Calamari's ``createartifact``,
``updateprogress``, ``failstep``). Its output is read line by line: service
messages are acted on (output variables, secrets to mask, artifacts) and every
line is masked before it is passed on.

Variables reach the script through a private folder (0700, removed after)
holding base64 text, never through a command line or a string built for a
shell.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO

from agent.calamari.masking import Masker
from agent.calamari.service_messages import format_message, parse_line
from agent.calamari.templates import evaluate
from agent.calamari.variables import VariableSet

Write = Callable[[str], None]
SYNTAXES = {".sh": "bash", ".bash": "bash", ".py": "python"}
ERROR_OUTPUT_FAILS = "Octopus.Action.FailScriptOnErrorOutput"
# read as resources, not paths, so that the executor also runs from a zipapp
HELPERS = resources.files("agent.calamari.helpers")


class ScriptError(Exception):
    """The script cannot be run (unknown kind, unreadable)."""


@dataclass
class ScriptResult:
    exit_code: int
    outputs: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (value, sensitive)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (path, name)
    result_message: str | None = None


def syntax_of(script: Path) -> str:
    syntax = SYNTAXES.get(script.suffix.lower())
    if syntax is None:
        known = ", ".join(sorted(SYNTAXES))
        raise ScriptError(f"{script.name}: cannot tell how to run it (expected one of {known})")
    return syntax


def run_script(
    script: Path,
    variables: VariableSet,
    arguments: Sequence[str] = (),
    *,
    out: Write,
    err: Write,
    python: str = "python3",
    environment: Mapping[str, str] | None = None,
) -> ScriptResult:
    """Run ``script`` to the end; its (masked) output goes to ``out`` and ``err`` line by line.

    Output variables it sets are added to ``variables`` too (as Calamari does,
    also as ``Octopus.Action[NAME].Output.…``). ``environment`` replaces the
    inherited one. Raises ScriptError if it cannot start.
    """
    syntax = syntax_of(script)
    try:
        body = script.read_text(encoding="utf-8").replace("\r\n", "\n")
    except (OSError, UnicodeDecodeError) as error:
        raise ScriptError(f"cannot read script {script}: {error}") from None
    values = {name: value or "" for name, value in variables.evaluated().items()}
    with tempfile.TemporaryDirectory(prefix="tentacle-script-") as private:
        folder = Path(private)
        substituted = folder / script.name
        substituted.write_text(evaluate(body, variables.as_mapping(), lenient=True) or "")
        if syntax == "bash":
            command = _bash(folder, substituted, values, arguments)
        else:
            data = folder / "variables.json"
            data.write_text(json.dumps(values))
            bootstrap = folder / "bootstrap.py"
            bootstrap.write_text(HELPERS.joinpath("bootstrap.py").read_text())
            command = [python, "-u", str(bootstrap), str(data), str(substituted), *arguments]
        return _run(command, script.parent.absolute(), variables, out, err, environment)


def _bash(
    folder: Path, script: Path, values: dict[str, str], arguments: Sequence[str]
) -> list[str]:
    cases = "\n".join(
        f"        '{_b64(name)}') printf '%s' '{_b64(value)}' | base64 -d; echo ;;"
        for name, value in values.items()
    )
    configure = folder / "configure.sh"
    helpers = HELPERS.joinpath("octopus.sh").read_text()
    configure.write_text(helpers.replace("__VARIABLE_CASES__", cases))
    bootstrap = folder / "bootstrap.sh"
    bootstrap.write_text(
        f"source {shlex.quote(str(configure))}\nsource {shlex.quote(str(script))}\n"
    )
    return ["bash", str(bootstrap), *arguments]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _run(
    command: list[str],
    cwd: Path,
    variables: VariableSet,
    out: Write,
    err: Write,
    environment: Mapping[str, str] | None,
) -> ScriptResult:
    result = ScriptResult(0)
    maskers = [Masker(variables.sensitive_values()), Masker(variables.sensitive_values())]
    lock = threading.Lock()
    error_output = False  # a stderr line that is not a service message

    def handle(line: str, stream: int) -> None:
        nonlocal error_output
        message = parse_line(line)
        with lock:
            if message is not None:
                _act_on(message.name, message.attributes, result, variables, maskers)
            elif stream == 1 and line.strip():
                error_output = True
            masker, write = maskers[stream], (out, err)[stream]
            write(masker.feed(line + "\n"))

    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(environment) if environment is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    readers = [
        threading.Thread(target=_lines, args=(process.stdout, handle, 0)),
        threading.Thread(target=_lines, args=(process.stderr, handle, 1)),
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    result.exit_code = process.wait()
    for masker, write in zip(maskers, (out, err), strict=True):
        write(masker.flush())
    if result.exit_code == 0 and error_output and variables.flag(ERROR_OUTPUT_FAILS):
        result.exit_code = 1
        err(f"The script wrote to stderr and {ERROR_OUTPUT_FAILS} is true\n")
    return result


def _lines(stream: IO[bytes] | None, handle: Callable[[str, int], None], number: int) -> None:
    assert stream is not None
    for raw in stream:
        handle(raw.decode("utf-8", "replace").rstrip("\r\n"), number)


def _act_on(
    name: str,
    attributes: dict[str, str],
    result: ScriptResult,
    variables: VariableSet,
    maskers: list[Masker],
) -> None:
    if name == "setVariable" and "name" in attributes and "value" in attributes:
        sensitive = attributes.get("sensitive", "").strip().lower() == "true"
        if sensitive:
            for masker in maskers:
                masker.add(attributes["value"])
        variables.set_output(attributes["name"], attributes["value"], sensitive=sensitive)
        result.outputs[attributes["name"]] = (attributes["value"], sensitive)
    elif name == "mask" and attributes.get("value"):
        for masker in maskers:
            masker.add(attributes["value"])
    elif name == "createArtifact" and "path" in attributes:
        result.artifacts.append((attributes["path"], attributes.get("name", "")))
    elif name == "resultMessage":
        result.result_message = attributes.get("message")


def exit_code_message(exit_code: int) -> str:
    """The service message reporting the script's exit code as an output variable."""
    return format_message(
        "setVariable", {"name": "Octopus.Action.Script.ExitCode", "value": str(exit_code)}
    )
