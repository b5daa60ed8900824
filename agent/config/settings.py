"""A declarative table of settings, and everything derived from it.

A settings set is a frozen dataclass whose fields are declared with
:func:`setting`: the field's name and annotation are the setting's name and
type, and the field carries its coercion, default, environment variable,
command-line flag, help and how it is written to a document and shown to a
person. Everything that lists settings (the YAML file, the environment
overrides, a command's options, a "show" document, a "what changed" report)
iterates :func:`settings_of` instead of writing the list out again, so adding
a setting is one declaration. The agent's instance (``agent.config.model``)
is one such set; the hub's settings are another.

This module is pure: no I/O, no ``os.environ`` (the CLI hands mappings in),
no click (the CLI turns :class:`Flag` into options).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from agent.errors import ConfigError

T = TypeVar("T")
S = TypeVar("S")  # a settings set (an instance of a dataclass declared with setting())

FlagKind = Literal["text", "int", "float", "bool", "path"]
_KEY = "agent.config.settings"


@dataclass(frozen=True)
class Flag:
    """How a command sets a setting: ``--name VALUE``.

    ``kind`` and the bounds choose the option's parser (so its errors are the
    command line's usual ones); the value is then coerced like any other.
    A ``path`` is made absolute against the current folder first.
    """

    name: str
    kind: FlagKind = "text"
    low: float | None = None
    high: float | None = None
    metavar: str | None = None


def _identity(value: Any) -> Any:
    return value


def as_text(value: Any) -> Any:
    """Paths as their text, None as None: how a path is written to a file or shown."""
    return None if value is None else str(value)


def as_texts(values: Iterable[Any]) -> list[str]:
    return [str(value) for value in values]


@dataclass(frozen=True)
class Setting:
    """One row of the table. ``name`` is the field and the flag's destination; ``key``
    the file's key (the name unless declared otherwise, e.g. hub.yaml's ``Listen``);
    ``shown_as`` the key a person reads (None: not shown on its own)."""

    name: str
    key: str
    coerce: Callable[[Any], Any]
    default: Any
    env: str | None
    flag: Flag | None
    help: str
    shown_as: str | None
    dump: Callable[[Any], Any]  # the value as the YAML document holds it
    show: Callable[[Any], Any]  # the value as a person reads it, from the shown attribute
    shown_attribute: str  # the attribute shown (a property may present a derived value)


def setting(
    default: T,
    coerce: Callable[[Any], T],
    *,
    help: str = "",
    env: str | None = None,
    flag: Flag | None = None,
    shown_as: str | None = None,
    dump: Callable[[T], Any] = _identity,
    show: Callable[[Any], Any] | None = None,
    shown_attribute: str | None = None,
    required: bool = False,
    secret: bool = False,
    key: str | None = None,
) -> T:
    """Declare a dataclass field as a setting (see :class:`Setting` for the columns).

    ``show`` defaults to ``dump``; ``required`` settings have no default (they
    must come first in the class); ``secret`` ones stay out of ``repr``; ``key``
    is the file's key when it is not the field's name.
    """
    row = {
        "key": key,
        "coerce": coerce,
        "env": env,
        "flag": flag,
        "help": help,
        "shown_as": shown_as,
        "dump": dump,
        "show": show or dump,
        "shown_attribute": shown_attribute,
        "default": None if required else default,
    }
    metadata = {_KEY: row}
    if required:
        return field(metadata=metadata, repr=not secret)  # type: ignore[no-any-return]
    return field(default=default, metadata=metadata, repr=not secret)


def settings_of(kind: type[Any] | Any) -> tuple[Setting, ...]:
    """The table of a settings set (a class or an instance), in declaration order."""
    rows = []
    for item in dataclasses.fields(kind):
        row = item.metadata.get(_KEY)
        if row is not None:
            attribute = row["shown_attribute"] or item.name
            named = {"shown_attribute": attribute, "key": row["key"] or item.name}
            rows.append(Setting(name=item.name, **{**row, **named}))
    return tuple(rows)


def coerce_settings(kind: type[Any] | Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` coerced by their settings.

    Raises ValueError ``"<key>: <what was expected, got what>"`` (the file's key)
    for a bad value, KeyError for a name that is not a setting of ``kind``.
    """
    table = {row.name: row for row in settings_of(kind)}
    coerced = {}
    for name, value in values.items():
        row = table[name]
        try:
            coerced[name] = row.coerce(value)
        except ValueError as error:
            raise ValueError(f"{row.key}: {error}") from None
    return coerced


def with_settings(settings: S, values: Mapping[str, Any]) -> S:
    """A copy of ``settings`` with ``values`` coerced and replaced; see coerce_settings."""
    return replace(settings, **coerce_settings(settings, values))  # type: ignore[type-var]


def from_document(kind: type[S], document: Mapping[str, Any], **base: Any) -> S:
    """A settings set built from a file's mapping (by file key) over its defaults
    (and ``base``, by name).

    Raises ValueError naming an unknown key (and the known ones) or the
    setting whose value is invalid and what was expected.
    """
    names = names_of_keys(kind)
    for key in document:
        if key not in names:
            raise ValueError(f"unknown setting {key!r} (known settings: {', '.join(names)})")
    values = coerce_settings(kind, {**base, **{names[k]: v for k, v in document.items()}})
    return kind(**values)


def names_of_keys(kind: type[Any] | Any) -> dict[str, str]:
    """File key -> setting name, in table order."""
    return {row.key: row.name for row in settings_of(kind)}


def document_of(settings: Any) -> dict[str, Any]:
    """File key -> the value as the YAML file holds it, in table order."""
    return {row.key: row.dump(getattr(settings, row.name)) for row in settings_of(settings)}


def environment_of(kind: type[Any] | Any) -> dict[str, str]:
    """Environment variable -> setting name, for the settings that have one."""
    return {row.env: row.name for row in settings_of(kind) if row.env}


def apply_environment(settings: S, environ: Mapping[str, str]) -> S:
    """``settings`` with every set (non-empty) variable of its table applied.

    Raises ConfigError naming the variable, the setting and what was expected.
    """
    for variable, name in environment_of(settings).items():
        value = environ.get(variable, "")
        if not value:
            continue
        try:
            settings = with_settings(settings, {name: value})
        except ValueError as error:
            raise ConfigError(f"environment variable {variable}: {error}") from None
    return settings


def overridden_settings(kind: type[Any] | Any, environ: Mapping[str, str]) -> dict[str, str]:
    """Setting name -> the variable overriding it, for those set in ``environ``."""
    variables = environment_of(kind)
    return {name: variable for variable, name in variables.items() if environ.get(variable)}


def apply_flags(settings: S, flags: Mapping[str, Any]) -> S:
    """``settings`` with the flags given (not None) applied: the last layer.

    With :func:`apply_environment` before it, a value is taken flag >
    environment > file > default. Raises ValueError naming the setting.
    """
    given = {name: value for name, value in flags.items() if value is not None}
    return with_settings(settings, given)


def shown_of(settings: Any) -> dict[str, Any]:
    """Shown key -> the value as a person reads it, for the settings that are shown."""
    return {
        row.shown_as: row.show(getattr(settings, row.shown_attribute))
        for row in settings_of(settings)
        if row.shown_as
    }


def setting_of_shown(kind: type[Any] | Any) -> dict[str, str]:
    """Shown key -> setting name."""
    return {row.shown_as: row.name for row in settings_of(kind) if row.shown_as}
