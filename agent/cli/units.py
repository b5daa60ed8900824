"""systemd unit files from the repository's templates (``systemd/``), filled in.

Pure text work, no I/O but reading the template: ``render`` replaces the
values of named directives and keeps every other line (and every comment) as
the template has it, so the template stays the one description of the unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import agent
from agent.errors import ConfigError

AGENT_TEMPLATE = "tentacle@.service"
HUB_TEMPLATE = "tentacle-hub.service"


def template_folders() -> tuple[Path, ...]:
    """Where the templates are: inside the installed package (the wheel carries them,
    see pyproject.toml), else beside the package in a source checkout."""
    package = Path(agent.__file__).parent
    return (package / "systemd", package.parent / "systemd")


def read_template(name: str) -> str:
    """The template ``name``'s text. Raises ConfigError naming where it was looked for."""
    for folder in template_folders():
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    looked = ", ".join(str(folder) for folder in template_folders())
    raise ConfigError(f"the unit template {name} is missing from this installation ({looked})")


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with the value of each directive ``KEY`` in ``values`` replaced
    (its first ``KEY=`` line). Raises ValueError if the template lacks one of them:
    a template and its renderer must not drift apart silently."""
    lines = template.splitlines()
    for key, value in values.items():
        prefix = f"{key}="
        for number, line in enumerate(lines):
            if line.startswith(prefix):
                lines[number] = prefix + value
                break
        else:
            raise ValueError(f"the unit template has no {key}= line")
    return "\n".join(lines) + "\n"


def quoted(word: str) -> str:
    """``word`` as one word of a unit file's command line or path list: specifiers
    (%) and variables ($) escaped, quoted when it holds blanks, quotes or backslashes."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if any(c.isspace() or c in "\"'\\;" for c in escaped):
        inner = escaped.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{inner}"'
    return escaped


def command_line(argv: Sequence[str]) -> str:
    """An ExecStart= value for ``argv`` (the first word an absolute path)."""
    return " ".join(quoted(word) for word in argv)


def environment_assignment(name: str, value: str) -> str:
    """An Environment= value setting ``name`` to ``value``, quoted as one word."""
    if any(c in value for c in "\n\r"):
        raise ConfigError(f"{name} cannot hold a line break in a unit file: {value!r}")
    inner = f"{name}={value}".replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{inner}"'


def path_list(paths: Sequence[str]) -> str:
    """A ReadWritePaths= value: each path quoted, a leading "-" kept outside the quotes
    (it tells systemd that a missing path is not an error)."""
    words = []
    for path in paths:
        optional = path.startswith("-")
        words.append(("-" if optional else "") + quoted(path.removeprefix("-")))
    return " ".join(words)


def check_unit_value(what: str, value: str) -> None:
    """Raises ConfigError if ``value`` (a path going into a unit) has a line break."""
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{what} cannot go into a unit file: it holds a line break ({value!r})")


def hub_unit_text(executable: str, home: Path, user: str) -> str:
    """The hub's unit for a hub home at ``home`` run by ``user``, from its template."""
    for what, value in (("the program", executable), ("the hub's home", str(home))):
        check_unit_value(what, value)
    values = {
        "ExecStart": command_line([executable, "hub", "serve", "--home", str(home)]),
        "User": user,
        "ReadWritePaths": path_list([str(home)]),
    }
    return render(read_template(HUB_TEMPLATE), values)
