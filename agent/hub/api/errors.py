"""Errors as Octopus's API sends them: ``{"ErrorMessage": ..., "Errors": [...]}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa
from aiohttp import web

from agent.hub.api.redact import mask_keys

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: the status, one message, and the details."""

    def __init__(self, status: int, message: str, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors) or [message]


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def invalid(errors: Sequence[str]) -> ApiError:
    """422: each entry names a field and what was expected of it."""
    return ApiError(422, "There was a problem with your request.", errors)


def error_response(error: ApiError) -> web.Response:
    body = {"ErrorMessage": error.message, "Errors": error.errors}
    return web.json_response(body, status=error.status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes Octopus's error JSON; an unexpected one is logged as a 500
    (with the route, never the request's headers, which carry the API key)."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        reason = (
            error.reason if error.status != 404 else f"no such resource: {mask_keys(request.path)}"
        )
        return error_response(ApiError(error.status, reason))
    except json.JSONDecodeError as error:
        return error_response(bad_request(f"the request body is not valid JSON: {error}"))
    except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as error:
        log.warning(
            "%s %s: the database is unavailable: %s",
            request.method,
            mask_keys(request.path),
            type(error).__name__,
        )
        return error_response(ApiError(503, "the hub's database is unavailable; try again"))
    except Exception:
        log.exception("%s %s failed", request.method, mask_keys(request.path))
        return error_response(ApiError(500, "the hub failed to handle this request; see its log"))
