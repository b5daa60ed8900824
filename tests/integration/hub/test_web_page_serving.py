"""The web page's files: served at /app/ without a key, with a policy that keeps
the page to this hub's own scripts and API, and nothing outside the page's folder."""

from __future__ import annotations

import pytest

from agent.hub.api.webpage import SECURITY_HEADERS
from tests.helpers.hub import RunningHub


async def _get(hub: RunningHub, path: str) -> tuple[int, dict[str, str], bytes]:
    async with hub.api.session.get(hub.api.url + path, allow_redirects=False) as response:
        return response.status, dict(response.headers), await response.read()


async def test_the_page_is_served_without_a_key_with_its_security_headers(
    hub: RunningHub,
) -> None:
    status, headers, body = await _get(hub, "/app/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"<html" in body
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    assert "script-src 'self'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/app"])
async def test_the_hub_s_root_leads_to_the_page(hub: RunningHub, path: str) -> None:
    status, headers, _ = await _get(hub, path)
    assert (status, headers["Location"]) == (302, "/app/")


@pytest.mark.parametrize(
    "path",
    [
        "/app/no-such-file.js",
        "/app/../../agent/hub/home.py",
        "/app/%2e%2e/%2e%2e/home.py",
        "/app/..%2f..%2fhome.py",
        "/app/%2fetc%2fpasswd",
    ],
)
async def test_nothing_outside_the_page_s_folder_is_served(hub: RunningHub, path: str) -> None:
    status, _, body = await _get(hub, path)
    assert status == 404, (path, body[:200])
    assert b"root:" not in body
    assert b"import" not in body


async def test_the_browser_s_favicon_is_the_page_s_icon_without_a_key(hub: RunningHub) -> None:
    """Browsers ask /favicon.ico whatever the page links: the same icon, not a 404."""
    status, headers, body = await _get(hub, "/favicon.ico")
    assert status == 200
    assert headers["Content-Type"].startswith("image/svg+xml")
    assert body == (await _get(hub, "/app/icon.svg"))[2]
    assert b"<svg" in body
