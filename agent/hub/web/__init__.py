"""The hub's web page: static HTML, CSS and JavaScript served at ``/app/``.

Nothing is built at install time and nothing is fetched from elsewhere: the
files under ``static/`` are the page. It signs in with an API key and talks to
the same REST API as every other client (no private endpoints).
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
