"""The deployment journal: what was installed where, and the retention of old installs."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Deployment:
    Id: str
    PackageId: str
    PackageVersion: str
    ExtractedTo: str
    InstalledOn: str
    WasSuccessful: bool
    RetentionPolicySet: str

    @classmethod
    def new(
        cls, package_id: str, version: str, extracted_to: Path, ok: bool, policy: str
    ) -> Deployment:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        return cls(uuid.uuid4().hex, package_id, version, str(extracted_to), now, ok, policy)


class Journal:
    """A JSON list of deployments in ``path``, replaced atomically (0600) on each change.

    (The executor may not import agent.atomicfile, hence its own temp-and-rename.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[Deployment]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [Deployment(**entry) for entry in document]

    def save(self, entries: list[Deployment]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps([asdict(entry) for entry in entries], indent=2)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def add(self, deployment: Deployment) -> None:
        self.save([*self.entries(), deployment])

    def apply_retention(self, policy: str, keep: int, current: Deployment) -> list[str]:
        """Keep the ``keep`` newest successful deployments of ``policy`` (and ``current``);
        delete the others' folders (unless a kept one shares it) and entries.
        Returns the folders deleted."""
        entries = self.entries()
        mine = [entry for entry in entries if entry.RetentionPolicySet == policy]
        successful = [entry for entry in mine if entry.WasSuccessful]
        kept = {entry.Id for entry in successful[-keep:]} | {current.Id}
        removed = [entry for entry in mine if entry.Id not in kept]
        kept_folders = {entry.ExtractedTo for entry in entries if entry not in removed}
        deleted = []
        for entry in removed:
            if entry.ExtractedTo not in kept_folders and Path(entry.ExtractedTo).exists():
                shutil.rmtree(entry.ExtractedTo, ignore_errors=True)
                deleted.append(entry.ExtractedTo)
        self.save([entry for entry in entries if entry not in removed])
        return deleted
