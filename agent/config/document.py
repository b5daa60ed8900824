"""The config file: YAML in, frozen InstanceConfig out, and back (and the same for
any settings set of the table, with :func:`parse_settings`).

Errors name the file and the line, because the person reading them will open
the file in an editor. Unknown keys are errors too: a misspelt setting that
silently does nothing is worse than a refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agent.atomicfile import PRIVATE, write_atomic
from agent.config.model import InstanceConfig
from agent.config.settings import coerce_settings, document_of, names_of_keys
from agent.config.trust import TrustedPeer
from agent.errors import CertificateError, ConfigError

TRUSTED_KEY = "trusted"
S = TypeVar("S")
HEADER = "# tentacle instance configuration. Change it with `tentacle configure`.\n"


def load_config(path: Path) -> InstanceConfig:
    """Read and validate the config file at ``path``.

    An empty file is a valid config with every default; ``home`` then defaults to
    the file's own folder, as Tentacle does. Raises ConfigError naming the file
    (and the line, where there is one) if the file is missing, unreadable or invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> InstanceConfig:
    """Validate config ``text`` read from ``path``; see :func:`load_config`."""
    base = {"home": str(path.parent.absolute())}
    config, extras = parse_settings(
        InstanceConfig, text, path, base=base, extra=(TRUSTED_KEY,), example="port: 10933"
    )
    value, node = extras.get(TRUSTED_KEY, (None, None))
    return config.with_trusted(_trusted(value, node, path))


def parse_settings(
    kind: type[S],
    text: str,
    path: Path,
    *,
    base: Mapping[str, Any],
    extra: tuple[str, ...] = (),
    example: str = "name: value",
) -> tuple[S, dict[str, tuple[Any, yaml.Node]]]:
    """Validate YAML ``text`` read from ``path`` as the settings set ``kind``.

    The file's values go over ``base`` (values the file may leave out, such
    as a home), which go over the table's defaults; an empty file is every
    default. Keys named in ``extra`` are not settings: they are returned with
    their YAML nodes, for the caller to read (and to name their lines).
    Raises ConfigError naming the file and the line: not YAML, not a mapping,
    an unknown key (listing the known ones), or an invalid value (the setting
    and what was expected).
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else 1
        raise ConfigError(f"{path} line {line}: not valid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if document is None:
        return kind(**coerce_settings(kind, base)), {}
    if not isinstance(node, yaml.MappingNode) or not isinstance(document, dict):
        raise ConfigError(f"{path} line 1: expected a mapping of settings, e.g. {example!r}")
    lines = {str(key.value): key.start_mark.line + 1 for key, _ in node.value}
    names = names_of_keys(kind)
    values: dict[str, Any] = dict(base)
    for key, value in document.items():
        if key in extra:
            continue
        if key not in names:
            known = ", ".join([*names, *extra])
            where = f"{path} line {lines.get(str(key), 1)}"
            raise ConfigError(f"{where}: unknown setting {key!r} (known settings: {known})")
        values[names[key]] = value
    try:
        settings = kind(**coerce_settings(kind, values))
    except ValueError as error:
        name = str(error).split(":", 1)[0]
        raise ConfigError(f"{path} line {lines.get(name, 1)}: {error}") from None
    extras = {str(key.value): (document[key.value], value) for key, value in node.value
              if key.value in extra}  # fmt: skip
    return settings, extras


def _trusted(value: Any, node: yaml.Node | None, path: Path) -> tuple[TrustedPeer, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not isinstance(node, yaml.SequenceNode):
        line = node.start_mark.line + 1 if node else 1
        raise ConfigError(f"{path} line {line}: {TRUSTED_KEY}: expected a list of peers")
    return tuple(
        _peer(item, item_node.start_mark.line + 1, path)
        for item, item_node in zip(value, node.value, strict=True)
    )


def _peer(item: Any, line: int, path: Path) -> TrustedPeer:
    where = f"{path} line {line}"
    if not isinstance(item, dict) or not isinstance(item.get("thumbprint"), str):
        raise ConfigError(
            f"{where}: a trusted peer needs 'thumbprint' (and 'certificate' once known)"
        )
    unknown = set(item) - {"thumbprint", "certificate"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys in a trusted peer: {', '.join(sorted(unknown))}")
    try:
        pending = TrustedPeer.pending(item["thumbprint"])
        certificate = item.get("certificate")
        if certificate is None:
            return pending
        if not isinstance(certificate, str):
            raise CertificateError("'certificate' must be PEM text")
        peer = TrustedPeer(pending.thumbprint, certificate)
        peer.check()
    except CertificateError as error:
        raise ConfigError(f"{where}: {error}") from None
    return peer


def render_config(config: InstanceConfig) -> str:
    """The YAML text for ``config``; :func:`parse_config` reads it back equal."""
    document: dict[str, Any] = {
        **document_of(config),
        TRUSTED_KEY: [_render_peer(peer) for peer in config.trusted],
    }
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (certificates) as literal blocks a person can read."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def _render_peer(peer: TrustedPeer) -> dict[str, str]:
    rendered = {"thumbprint": peer.thumbprint}
    if peer.certificate_pem is not None:
        rendered["certificate"] = peer.certificate_pem
    return rendered


def save_config(path: Path, config: InstanceConfig) -> None:
    """Write ``config`` to ``path`` atomically with mode 0600."""
    write_atomic(path, render_config(config).encode("utf-8"), mode=PRIVATE)
