"""The throwaway PostgreSQL of the store's tests finds Debian's binaries, which the
postgresql package puts in /usr/lib/postgresql/VERSION/bin, not on PATH."""

from __future__ import annotations

import pytest

from tests.helpers.postgres import _binary, _debian_version


def test_debian_versions_compare_as_numbers() -> None:
    paths = ["/usr/lib/postgresql/15/bin/initdb", "/usr/lib/postgresql/9.6/bin/initdb"]
    assert max(paths, key=_debian_version) == "/usr/lib/postgresql/15/bin/initdb"


@pytest.mark.parametrize("name", ["initdb", "pg_ctl"])
def test_found_where_debian_puts_them_without_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    found = _binary(name)
    assert found.startswith("/usr/lib/postgresql/")
    assert found.endswith(f"/bin/{name}")
