"""The instance index: which named instances exist and where their configs are.

One small JSON file per instance, ``<index>/<slug>.json``, holding
``{"InstanceName": ..., "ConfigurationFilePath": ...}`` as Tentacle lists them.
Names are case-insensitive and unique; the slug (lower case, spaces as dashes)
is the file name, so two names that would collide on disk are refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from agent.atomicfile import write_atomic
from agent.errors import InstanceError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}")
RESERVED_NAMES = frozenset({"instances"})


def instance_slug(name: str) -> str:
    """The file-system and service-name form of an instance name.

    Raises InstanceError if the name is not 1-63 letters, digits, spaces, dots,
    dashes or underscores starting with a letter or digit, or is reserved.
    """
    if not _NAME.fullmatch(name) or name != name.strip():
        raise InstanceError(
            f"invalid instance name {name!r}: expected 1 to 63 letters, digits, spaces, "
            "'.', '-' or '_', starting with a letter or digit"
        )
    slug = name.lower().replace(" ", "-")
    if slug in RESERVED_NAMES:
        raise InstanceError(f"invalid instance name {name!r}: the name is reserved")
    return slug


@dataclass(frozen=True)
class InstanceEntry:
    name: str
    config_path: Path

    def as_json(self) -> dict[str, str]:
        return {"InstanceName": self.name, "ConfigurationFilePath": str(self.config_path)}


class InstanceIndex:
    """The index folder. Reads are fresh each call; writes are atomic per entry."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def entries(self) -> list[InstanceEntry]:
        """Every instance, sorted by name. Raises InstanceError on a corrupt entry."""
        if not self.directory.is_dir():
            return []
        found = [self._read(path) for path in self.directory.glob("*.json")]
        return sorted(found, key=lambda entry: entry.name.lower())

    def find(self, name: str) -> InstanceEntry | None:
        path = self._path(name)
        return self._read(path) if path.exists() else None

    def get(self, name: str) -> InstanceEntry:
        """Raises InstanceError naming the known instances if ``name`` is unknown."""
        entry = self.find(name)
        if entry is None:
            raise InstanceError(f"unknown instance {name!r}; {self._known()}")
        return entry

    def resolve(self, name: str | None) -> InstanceEntry:
        """The named instance, or the only one when ``name`` is None.

        Raises InstanceError if ``name`` is unknown, or is None while there are
        no instances or several.
        """
        if name is not None:
            return self.get(name)
        entries = self.entries()
        if len(entries) == 1:
            return entries[0]
        if not entries:
            raise InstanceError(
                "there are no instances; create one with 'tentacle create-instance --instance NAME'"
            )
        names = ", ".join(entry.name for entry in entries)
        raise InstanceError(f"there are several instances ({names}); name one with --instance")

    def check_available(self, name: str) -> None:
        """Raises InstanceError if ``name`` is invalid or taken (case-insensitively)."""
        existing = self.find(name)
        if existing is not None:
            raise InstanceError(
                f"an instance named {existing.name!r} already exists "
                f"(config {existing.config_path})"
            )

    def add(self, entry: InstanceEntry) -> None:
        """Record a new instance. Raises InstanceError if the name is taken."""
        self.check_available(entry.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps(entry.as_json(), indent=2) + "\n"
        write_atomic(self._path(entry.name), data.encode("utf-8"))

    def remove(self, name: str) -> InstanceEntry:
        """Forget an instance; returns its entry. Raises InstanceError if unknown."""
        entry = self.get(name)
        self._path(name).unlink()
        return entry

    def entry_path(self, name: str) -> Path:
        """The file holding ``name``'s entry (whether or not it exists)."""
        return self._path(name)

    def _path(self, name: str) -> Path:
        return self.directory / f"{instance_slug(name)}.json"

    def _read(self, path: Path) -> InstanceEntry:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return InstanceEntry(data["InstanceName"], Path(data["ConfigurationFilePath"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InstanceError(
                f"corrupt instance index entry {path}: {error!r}; expected JSON with "
                "InstanceName and ConfigurationFilePath"
            ) from None

    def _known(self) -> str:
        names = [entry.name for entry in self.entries()]
        return f"known instances: {', '.join(names)}" if names else "there are no instances"
