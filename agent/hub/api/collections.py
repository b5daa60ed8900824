"""Answering a collection route: filters common to every collection, then a page."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from agent.hub.api.errors import bad_request
from agent.hub.api.paging import BadPaging, Page, envelope, page_of


def id_filter(request: web.Request) -> set[str] | None:
    """The ``ids`` query parameter (comma-separated, or repeated) as a set, if given."""
    values = request.query.getall("ids", [])
    if not values:
        return None
    return {part.strip() for value in values for part in value.split(",") if part.strip()}


def name_matches(request: web.Request, name: str) -> bool:
    """``name`` (exact, case-insensitive) and ``partialName`` (contains) filters."""
    return query_name_matches(request.query, name)


def query_name_matches(query: Mapping[str, str], name: str) -> bool:
    """:func:`name_matches` over a query's parameters."""
    exact = query.get("name")
    partial = query.get("partialName")
    if exact is not None and name.lower() != exact.lower():
        return False
    return partial is None or partial.lower() in name.lower()


def respond_page(
    request: web.Request,
    item_type: str,
    path: str,
    resources: Sequence[dict[str, Any]],
    template: Sequence[str] = ("skip", "take", "ids", "partialName"),
) -> web.Response:
    """Filter ``resources`` by ``ids``, ``name`` and ``partialName``, then page them."""
    wanted = id_filter(request)
    chosen = [
        r
        for r in resources
        if (wanted is None or r["Id"] in wanted) and name_matches(request, str(r.get("Name", "")))
    ]
    try:
        page = page_of(request.query)
    except BadPaging as error:
        raise bad_request(str(error)) from None
    body = envelope(
        item_type, path, page.slice(chosen), len(chosen), page, template, dict(request.query)
    )
    return web.json_response(body)


def paging(request: web.Request) -> Page:
    """``skip`` and ``take`` of the request; 400 naming the one that is wrong."""
    try:
        return page_of(request.query)
    except BadPaging as error:
        raise bad_request(str(error)) from None


def respond_counted(
    request: web.Request,
    item_type: str,
    path: str,
    items: Sequence[dict[str, Any]],
    total: int,
    page: Page,
    template: Sequence[str] = ("skip", "take", "ids", "partialName"),
    more: Mapping[str, Any] | None = None,
) -> web.Response:
    """A page the store chose and counted (``items`` of ``total``), in the envelope;
    ``more`` adds fields of the collection's own to it."""
    body = envelope(item_type, path, items, total, page, template, dict(request.query))
    return web.json_response({**body, **(more or {})})


def respond_all(
    request: web.Request,
    resources: Sequence[dict[str, Any]],
    keep: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> web.Response:
    """A plain array (``/all``), filtered as a page is: ``ids``, ``name``, ``partialName``."""
    wanted = id_filter(request)
    return web.json_response(
        [
            r
            for r in resources
            if (wanted is None or r["Id"] in wanted)
            and name_matches(request, str(r.get("Name", "")))
            and keep(r)
        ]
    )
