from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import TentacleCli


@pytest.fixture
def tentacle(tmp_path: Path) -> TentacleCli:
    """The real `tentacle` command, with its own empty config home."""
    return TentacleCli(tmp_path)
