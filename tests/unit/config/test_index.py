from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import InstanceEntry, InstanceIndex, instance_slug
from agent.errors import InstanceError


@pytest.fixture
def index(tmp_path: Path) -> InstanceIndex:
    return InstanceIndex(tmp_path / "instances")


@pytest.mark.parametrize(
    ("name", "slug"), [("Tentacle", "tentacle"), ("My Worker 2", "my-worker-2"), ("a.b_c", "a.b_c")]
)
def test_slug(name: str, slug: str) -> None:
    assert instance_slug(name) == slug


@pytest.mark.parametrize("name", ["", " lead", "trail ", "../up", "a/b", "-dash", "x" * 64, "é"])
def test_invalid_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(InstanceError, match="expected 1 to 63 letters"):
        instance_slug(name)


def test_reserved_name(index: InstanceIndex) -> None:
    with pytest.raises(InstanceError, match="reserved"):
        index.add(InstanceEntry("Instances", Path("/x")))


def test_names_are_unique_regardless_of_case(index: InstanceIndex) -> None:
    index.add(InstanceEntry("Worker", Path("/a.yaml")))
    with pytest.raises(InstanceError, match="'Worker' already exists .config /a.yaml."):
        index.add(InstanceEntry("WORKER", Path("/b.yaml")))
    assert index.get("worker") == InstanceEntry("Worker", Path("/a.yaml"))


def test_resolve_by_name_or_the_only_one(index: InstanceIndex) -> None:
    with pytest.raises(InstanceError, match="there are no instances; create one"):
        index.resolve(None)
    index.add(InstanceEntry("one", Path("/1.yaml")))
    assert index.resolve(None).name == "one"
    index.add(InstanceEntry("two", Path("/2.yaml")))
    with pytest.raises(InstanceError, match=r"several instances \(one, two\)"):
        index.resolve(None)
    assert index.resolve("TWO").config_path == Path("/2.yaml")
    with pytest.raises(InstanceError, match="unknown instance 'three'; known instances: one, two"):
        index.resolve("three")


def test_remove(index: InstanceIndex) -> None:
    index.add(InstanceEntry("one", Path("/1.yaml")))
    assert index.remove("ONE").name == "one"
    assert index.entries() == []
    with pytest.raises(InstanceError, match="unknown instance"):
        index.remove("one")


def test_corrupt_entry_is_named(index: InstanceIndex) -> None:
    index.directory.mkdir()
    (index.directory / "bad.json").write_text("{not json")
    with pytest.raises(InstanceError, match="corrupt instance index entry .*bad.json"):
        index.entries()
