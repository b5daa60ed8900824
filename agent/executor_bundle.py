"""The executor bundle: one zipapp of agent/calamari and what its CLI needs.

``tentacle calamari ...`` on an SSH worker runs this file with the target's
``python3``, and so do scripts whose uid cannot reach the agent's own installation
(agent/scripts/reach.py): the executor's package, the ``calamari`` verbs of the CLI
(agent/cli/calamari_cmd.py and the two modules it uses) and pure-Python click,
PyYAML and ruamel.yaml. It is read from the installed files, never imported (the client does
not import the executor or the CLI: tests/test_architecture.py), built once per
process, deterministic (fixed timestamps, sorted entries), and named by its
content's SHA-256 so a target keeps one copy per version.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import agent

MAIN = '''\
"""tentacle's executor for SSH workers: `python3 tentacle-calamari.pyz calamari ...`."""
import sys

if sys.version_info < (3, 11):
    sys.exit(f"tentacle calamari needs Python 3.11 or newer; this is {sys.version.split()[0]}")

import click

from agent.cli.calamari_cmd import calamari_group


@click.group()
def tentacle() -> None:
    """The executor's commands of tentacle (on an SSH worker, without the agent)."""


tentacle.add_command(calamari_group)
tentacle(prog_name="tentacle")
'''

CLI_INIT = '"""The executor\'s part of the tentacle command line."""\n'
CLI_MODULES = ("calamari_cmd.py", "options.py", "output.py")
AGENT_MODULES = ("__init__.py", "atomicfile.py")
SKIPPED_SUFFIXES = (".pyc", ".so", ".pyd")
# pure Python, so the zipapp runs on any target's python3 (ruamel is a namespace
# package: ruamel/yaml/ alone is carried)
LIBRARIES = ("click", "yaml", "ruamel.yaml")
# zipimport finds no implicit namespace package: the zipapp's ruamel is a plain one
NAMESPACE_INIT = '__path__ = __import__("pkgutil").extend_path(__path__, __name__)\n'


@dataclass(frozen=True)
class Bundle:
    """The zipapp's bytes and their SHA-256 (hex)."""

    data: bytes
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.sha256}.pyz"


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the executor bundle needs the package {name}, which is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _tree(folder: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        wanted = "__pycache__" not in relative.parts and not path.name.endswith(SKIPPED_SUFFIXES)
        if wanted and path.is_file():
            yield f"{prefix}/{relative.as_posix()}", path


def _entries() -> Iterator[tuple[str, bytes]]:
    package = Path(agent.__file__).parent
    yield "__main__.py", MAIN.encode()
    for name in AGENT_MODULES:
        yield f"agent/{name}", (package / name).read_bytes()
    yield "agent/cli/__init__.py", CLI_INIT.encode()
    for name in CLI_MODULES:
        yield f"agent/cli/{name}", (package / "cli" / name).read_bytes()
    for name, path in _tree(package / "calamari", "agent/calamari"):
        yield name, path.read_bytes()
    yield "ruamel/__init__.py", NAMESPACE_INIT.encode()
    for library in LIBRARIES:
        for name, path in _tree(_package_folder(library), library.replace(".", "/")):
            yield name, path.read_bytes()


@functools.cache
def executor_bundle() -> Bundle:
    """The zipapp (built on the first call, then kept for the process)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(_entries()):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    data = buffer.getvalue()
    return Bundle(data, hashlib.sha256(data).hexdigest())
