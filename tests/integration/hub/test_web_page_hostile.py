"""Hostile requests for the web page's files (found by the webtest helper): each is
refused with a 404 that names the file, never a 500."""

from __future__ import annotations

import pytest
from yarl import URL

from tests.helpers.hub import RunningHub


@pytest.mark.xfail(
    strict=True,
    reason="a NUL byte in /app/<name> reaches Path.resolve(): ValueError, a 500 and a traceback",
)
@pytest.mark.parametrize("path", ["/app/%00", "/app/app.js%00.html"])
async def test_a_nul_byte_in_a_page_file_name_is_a_404(hub: RunningHub, path: str) -> None:
    url = URL(hub.api.url + path, encoded=True)  # as sent: the %00 not re-quoted
    async with hub.api.session.get(url, allow_redirects=False) as response:
        body = await response.json()
        assert response.status == 404, body
    assert "the web page has no file" in body["ErrorMessage"]
