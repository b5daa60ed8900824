"""Runs a Python step with the helper functions as globals.

Usage: bootstrap.py VARIABLES.json SCRIPT [ARGS...]; VARIABLES.json holds
``values`` (name -> value), ``sensitive`` (names) and ``fd``: an inherited pipe
carrying the sensitive values, base64, one a line in that order, so that no
secret is in a file. Run as a file by the executor, in the step's own interpreter.
"""

import base64
import json
import os
import runpy
import sys


def _encode(text: object) -> str:
    return base64.b64encode(str(text).encode()).decode()


def _message(kind: str, /, **attributes: object) -> None:
    body = "".join(
        f" {key}='{_encode(value)}'" for key, value in attributes.items() if value is not None
    )
    print(f"##octopus[{kind}{body}]", flush=True)


with open(sys.argv[1], encoding="utf-8") as _file:
    _document = json.load(_file)
octopusvariables: dict[str, str] = dict(_document["values"])
with os.fdopen(_document["fd"], "rb") as _pipe:  # closed: the script's children don't get it
    _secrets = _pipe.read().splitlines()
for _name, _line in zip(_document["sensitive"], _secrets, strict=True):
    octopusvariables[_name] = base64.b64decode(_line).decode()
del _document, _secrets, _pipe


def get_octopusvariable(key: str) -> str:
    return octopusvariables.get(key, "")


def set_octopusvariable(name: str, value: str, sensitive: bool = False) -> None:
    octopusvariables[name] = value
    _message("setVariable", name=name, value=value, sensitive="True" if sensitive else None)


def new_octopusartifact(path: str, name: str | None = None) -> None:
    path = os.path.abspath(path)
    length = os.path.getsize(path) if os.path.isfile(path) else 0
    _message("createArtifact", path=path, name=name or os.path.basename(path), length=length)


def update_progress(percentage: int | str, message: str | None = None) -> None:
    _message("progress", percentage=percentage, message=message or "")


def fail_step(message: str | None = None) -> None:
    if message:
        _message("resultMessage", message=message)
    sys.exit(1)


createartifact, updateprogress, failstep = new_octopusartifact, update_progress, fail_step

if __name__ == "__main__":
    script, arguments = sys.argv[2], sys.argv[3:]
    sys.argv = [script, *arguments]
    helpers = {name: value for name, value in globals().items() if not name.startswith("_")}
    runpy.run_path(script, init_globals=helpers, run_name="__main__")
