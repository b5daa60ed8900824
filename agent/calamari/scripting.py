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
shell. Sensitive values (and values that contain one) never touch a file: they
travel through a pipe the script's process inherits, read by the helpers once
at start and closed. The script runs in its own process group: on
:class:`Interrupted` (raised by the command line's SIGTERM/SIGINT handler) the
signal is forwarded to that group, the script awaited and the private folder
removed before the exception goes on.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO

from agent.calamari.masking import Masker
from agent.calamari.service_messages import (
    PREFIX,
    ServiceMessage,
    format_message,
    parse_line,
)
from agent.calamari.templates import evaluate
from agent.calamari.variables import VariableSet

Write = Callable[[str], None]
SYNTAXES = {".sh": "bash", ".bash": "bash", ".py": "python"}
ERROR_OUTPUT_FAILS = "Octopus.Action.FailScriptOnErrorOutput"
# read as resources, not paths, so that the executor also runs from a zipapp
HELPERS = resources.files("agent.calamari.helpers")


class ScriptError(Exception):
    """The script cannot be run (unknown kind, unreadable)."""


class Interrupted(BaseException):  # like KeyboardInterrupt: not an Exception to catch
    """The executor was asked to stop by signal ``signum`` (raised by its signal handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


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
    plain, secret = _split(variables)
    secrets_in, secrets_out = os.pipe()  # the child reads the sensitive values from it
    try:
        with tempfile.TemporaryDirectory(prefix="tentacle-script-") as private:
            folder = Path(private)
            substituted = folder / script.name
            substituted.write_text(evaluate(body, variables.as_mapping(), lenient=True) or "")
            if syntax == "bash":
                command = _bash(folder, substituted, plain, list(secret), secrets_in, arguments)
            else:
                data = folder / "variables.json"
                document = {"values": plain, "sensitive": list(secret), "fd": secrets_in}
                data.write_text(json.dumps(document))
                bootstrap = folder / "bootstrap.py"
                bootstrap.write_text(HELPERS.joinpath("bootstrap.py").read_text())
                command = [python, "-u", str(bootstrap), str(data), str(substituted), *arguments]
            payload = "".join(f"{_b64(value)}\n" for value in secret.values()).encode()
            channel = _Secrets(secrets_in, secrets_out, payload)
            secrets_in = secrets_out = -1  # the channel owns them now
            return _run(command, script.parent.absolute(), variables, out, err, environment,
                        channel)  # fmt: skip
    finally:
        for fd in (secrets_in, secrets_out):
            if fd >= 0:
                os.close(fd)


def _split(variables: VariableSet) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, sensitive) evaluated values; a value that contains a secret is sensitive too."""
    secrets = variables.sensitive_values()
    flagged = {variable.name for variable in variables if variable.sensitive}
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in variables.evaluated().items():
        text = value or ""
        hidden = name in flagged or any(each in text for each in secrets)
        (secret if hidden else plain)[name] = text
    return plain, secret


@dataclass
class _Secrets:
    """The pipe carrying the sensitive values (base64, one a line) to the child."""

    read_end: int
    write_end: int
    payload: bytes

    def feed(self) -> None:
        """Write the payload and close; a child that died before reading is not an error."""
        try:
            with os.fdopen(self.write_end, "wb") as pipe:
                pipe.write(self.payload)
        except OSError:
            pass


def _bash(
    folder: Path,
    script: Path,
    values: dict[str, str],
    secret_names: list[str],
    fd: int,
    arguments: Sequence[str],
) -> list[str]:
    arms = [
        f"        '{_b64(name)}') printf '%s' '{_b64(value)}' | base64 -d; echo ;;"
        for name, value in values.items()
    ]
    arms += [
        f"        '{_b64(name)}') printf '%s' \"${{__octopus_secrets[{index}]}}\" | base64 -d;"
        " echo ;;"
        for index, name in enumerate(secret_names)
    ]
    configure = folder / "configure.sh"
    helpers = HELPERS.joinpath("octopus.sh").read_text()
    configure.write_text(
        helpers.replace("__VARIABLE_CASES__", "\n".join(arms)).replace("__SECRETS_FD__", str(fd))
    )
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
    secrets: _Secrets,
) -> ScriptResult:
    result = ScriptResult(0)
    maskers = [Masker(variables.sensitive_values()), Masker(variables.sensitive_values())]
    lock = threading.Lock()
    error_output = False  # a stderr line that is not a service message

    def handle(line: str, stream: int) -> None:
        nonlocal error_output
        message = parse_line(line)
        with lock:
            masker, write = maskers[stream], (out, err)[stream]
            if message is not None:
                _act_on(message.name, message.attributes, result, variables, maskers)
                write(masker.flush() + _masked_message(line, message, masker) + "\n")
                return
            if stream == 1 and line.strip():
                error_output = True
            write(masker.feed(line + "\n"))

    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(environment) if environment is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(secrets.read_end,),
            process_group=0,  # so that a signal can be forwarded to all it started
        )
    except BaseException:
        os.close(secrets.write_end)
        raise
    finally:
        os.close(secrets.read_end)
    threads = [
        threading.Thread(target=secrets.feed),
        threading.Thread(target=_lines, args=(process.stdout, handle, 0)),
        threading.Thread(target=_lines, args=(process.stderr, handle, 1)),
    ]
    try:  # a signal may come as soon as the script runs: while the threads start too
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.exit_code = process.wait()
    except BaseException as stop:  # Interrupted, KeyboardInterrupt: the script stops too
        _forward(process, stop.signum if isinstance(stop, Interrupted) else signal.SIGINT)
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join()
        if threads[0].ident is None:  # the secrets were never fed
            os.close(secrets.write_end)
        raise
    for masker, write in zip(maskers, (out, err), strict=True):
        write(masker.flush())
    if result.exit_code == 0 and error_output and variables.flag(ERROR_OUTPUT_FAILS):
        result.exit_code = 1
        err(f"The script wrote to stderr and {ERROR_OUTPUT_FAILS} is true\n")
    return result


def _forward(process: subprocess.Popen[bytes], signum: int) -> None:
    """Send ``signum`` to the script's process group and wait for the script to end."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signum)
    process.wait()


def _masked_message(line: str, message: ServiceMessage, masker: Masker) -> str:
    """``line`` with its service message re-encoded from masked attribute values.

    Masking the base64 of a message would leave it unparseable (and the output
    variable or artifact lost), so values are masked as text; a setVariable
    whose value held a secret says it is sensitive.
    """
    attributes = {key: masker.mask(value) for key, value in message.attributes.items()}
    masked = attributes.get("value") != message.attributes.get("value")
    if message.name == "setVariable" and masked:
        attributes = {k: v for k, v in attributes.items() if k.lower() != "sensitive"}
        attributes["sensitive"] = "True"
    try:
        rebuilt = format_message(message.name, attributes)
    except ValueError:  # a name XML allows but a message may not carry: mask as text
        return masker.mask(line)
    start = line.find(PREFIX)
    end = line.find("]", start)
    return masker.mask(line[:start]) + rebuilt + masker.mask(line[end + 1 :])


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
        # a value holding a known secret is one, whatever the script said
        sensitive = sensitive or maskers[0].mask(attributes["value"]) != attributes["value"]
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
