"""Target globs as Calamari's Glob matches them (Calamari.Common/Plumbing/FileSystem/
GlobExpressions/Glob.cs: ``**`` is zero or more folders, names in any case, groups
expanded and also taken literally)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.calamari.globs import expand_groups, matches, matching_files, target_lines

TREE = (
    "a.json",
    "App.JSON",
    "config/b.json",
    "config/deep/c.json",
    "[x]/d.json",
    "{y}/e.json",
    "x/f.json",
    "y/g.json",
    "notes.txt",
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in TREE:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    return tmp_path


def names(root: Path, pattern: str) -> list[str]:
    return [path.relative_to(root).as_posix() for path in matching_files(root, [pattern])]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("**/*.json", ["App.JSON", "[x]/d.json", "a.json", "config/b.json",
                       "config/deep/c.json", "x/f.json", "y/g.json", "{y}/e.json"]),
        ("*.json", ["App.JSON", "a.json"]),  # names in any case
        ("config/**/*.json", ["config/b.json", "config/deep/c.json"]),
        ("config\\*.json", ["config/b.json"]),
        ("./config/b.json", ["config/b.json"]),
        ("[x]/*.json", ["[x]/d.json", "x/f.json"]),  # the group, and the literal name
        ("{y}/*.json", ["y/g.json", "{y}/e.json"]),
        ("[a-b].json", ["a.json"]),
        ("{a,notes}.*", ["a.json", "notes.txt"]),
        ("?.json", ["a.json"]),
        ("a.json", ["a.json"]),
        ("A.json", []),  # no glob character: the exact path, as the file system has it
        ("../*", []),
        ("/etc/passwd", []),
        ("config", []),  # a folder is not a file
        (".", []),
    ],
)  # fmt: skip
def test_patterns(tree: Path, pattern: str, expected: list[str]) -> None:
    assert sorted(names(tree, pattern)) == sorted(expected)


def test_a_match_never_leaves_the_folder(
    tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.json").write_text("{}")
    (tree / "link").symlink_to(outside)
    assert "link/secret.json" not in names(tree, "**/*.json")
    assert names(tree, "link/*.json") == []


def test_folders_are_matched_but_are_not_files(tree: Path) -> None:
    assert [p.name for p in matches(tree, "conf*")] == ["config"]
    assert matches(tree, ".") == [tree]


def test_groups_expand_and_stay_bounded() -> None:
    assert expand_groups("a.{json,yml}") == ["a.json", "a.yml"]
    assert expand_groups("{a,b}{1,2}") == ["a1", "a2", "b1", "b2"]
    assert expand_groups("[ab].txt") == ["a.txt", "b.txt"]
    assert len(expand_groups("[a-z][a-z][a-z]")) <= 1024 + 26  # never explodes


def test_target_lines() -> None:
    assert target_lines(" a.json \n\n b.yml\r\n") == ["a.json", "b.yml"]
    assert target_lines("a.json;b.json\nc.json", ";") == ["a.json", "b.json", "c.json"]
