"""The dependency rules of docs/architecture.md, checked on the source itself.

Every module of ``agent`` belongs to a layer (its first name under ``agent``).
A layer may import only the layers listed for it; a new layer must be added
here before it can import anything, so the table stays the architecture.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent

PACKAGE = Path(agent.__file__).parent

ALLOWED: dict[str, set[str]] = {
    "__init__": set(),
    "__main__": {"cli"},
    "errors": set(),
    "atomicfile": {"errors"},
    "filechunks": set(),
    "protocol": {"errors"},
    "certs": {"errors", "atomicfile"},
    "config": {"errors", "atomicfile", "certs"},
    # observability: the metric objects and their endpoint, handed to what they count
    "observability": {"errors", "protocol"},
    "drain": {"errors", "atomicfile"},  # the drain request file (tentacle drain)
    # the executor as one zipapp: for SSH targets, and scripts' uids shut out of the install
    "executor_bundle": set(),
    "transport": {"errors", "protocol", "certs", "observability"},
    "scripts": {"errors", "atomicfile", "protocol", "observability", "executor_bundle"},
    "services": {"errors", "atomicfile", "filechunks", "protocol", "scripts", "certs",
                 "observability"},
    "daemon": {"errors", "atomicfile", "protocol", "certs", "config", "transport", "scripts",
               "services", "observability", "drain"},
    "client": {"errors", "atomicfile", "filechunks", "protocol", "certs", "transport",
               "executor_bundle"},
    "calamari": set(),
    # calamari: the hub masks and reads service messages as the executor does, and
    # reads package names as it does
    "hub": {"errors", "atomicfile", "certs", "config", "client", "scripts", "calamari",
            "observability"},
    "cli": {"errors", "atomicfile", "protocol", "certs", "config", "transport", "scripts",
            "services", "daemon", "client", "calamari", "hub", "observability", "drain"},
}  # fmt: skip

# Process-wide effects that belong to the command line alone.
CLI_ONLY_CALLS = {
    ("os", "environ"),
    ("os", "getenv"),
    ("os", "putenv"),
    ("sys", "exit"),
    ("logging", "basicConfig"),
}
CLI_LAYERS = {"cli", "__main__"}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        yield layer, path


def imported_layers(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"line {node.lineno}: use absolute imports (from agent.x import y)")
        for name in names:
            parts = name.split(".")
            if parts[0] == "agent" and len(parts) > 1:
                yield parts[1], node.lineno


@pytest.mark.parametrize(("layer", "path"), list(modules()), ids=str)
def test_imports_point_down_the_layers(layer: str, path: Path) -> None:
    assert layer in ALLOWED, f"{path}: layer {layer!r} is missing from the architecture table"
    tree = ast.parse(path.read_text(), str(path))
    for imported, line in imported_layers(tree):
        if imported == layer:
            continue
        assert imported in ALLOWED[layer], f"{path}:{line}: {layer} may not import agent.{imported}"


@pytest.mark.parametrize(("layer", "path"), list(modules()), ids=str)
def test_only_the_cli_touches_the_environment_exits_or_configures_logging(
    layer: str, path: Path
) -> None:
    if layer in CLI_LAYERS or (path.parent.name == "helpers" and layer == "calamari"):
        return  # the executor's helpers are programs run in a step's own interpreter
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in CLI_ONLY_CALLS
        ):
            pytest.fail(f"{path}:{node.lineno}: {node.value.id}.{node.attr} belongs to agent.cli")


def test_the_rules_catch_a_violation() -> None:
    bad = ast.parse("from agent.daemon import run\nimport agent.hub.store\n")
    assert [layer for layer, _ in imported_layers(bad)] == ["daemon", "hub"]
    assert "daemon" not in ALLOWED["client"]
    assert "hub" not in ALLOWED["client"]


# What the hub needs to reach workers, all from agent.client (it may not import transport)
HUB_NEEDS = {
    "Worker", "AgentClient", "Endpoint", "Connections", "PollingListener", "ChannelSettings",
    "Limits", "Proxy", "Backoff", "CLIENT_RETRY", "DEFAULT_QUEUE_TIMEOUT", "IDLE_TIMEOUT",
    "ScriptRequest", "ScriptOutcome", "LogChunk", "execute_script",
    "AgentNotConnected", "ConnectionLost", "TrustError", "RemoteError", "TransferError",
}  # fmt: skip


def test_the_hub_reaches_workers_through_client_alone() -> None:
    import agent.client

    assert not {"transport", "protocol", "services", "daemon"} & ALLOWED["hub"]
    missing = sorted(HUB_NEEDS - set(agent.client.__all__))
    assert not missing, f"agent.client must export {missing} for the hub"
    unbound = sorted(name for name in agent.client.__all__ if not hasattr(agent.client, name))
    assert not unbound, f"agent.client.__all__ names {unbound}, which it does not define"


# DESIGN.md §6: the hub reaches workers through client; its built-in worker alone
# (a worker on the hub's own machine) runs scripts through agent.scripts itself.
HUB_SCRIPTS_USERS = {PACKAGE / "hub" / "builtin.py"}


def test_only_the_hubs_builtin_worker_uses_the_script_runner() -> None:
    for path in sorted((PACKAGE / "hub").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for imported, line in imported_layers(tree):
            if imported == "scripts":
                assert path in HUB_SCRIPTS_USERS, (
                    f"{path}:{line}: only agent/hub/builtin.py may import agent.scripts"
                    " (the hub reaches workers through agent.client)"
                )
