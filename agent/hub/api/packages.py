"""/api/packages: the hub's built-in repository (Octopus's built-in feed).

``POST /api/packages/raw`` takes one file as multipart form-data (any field name:
Octopus's clients send ``fileToUpload`` or ``file``), named ``Id.1.2.3.zip`` (or
another extension the executor extracts), streamed to disk and hashed on the way
(agent.hub.packages): a 1 GiB package costs a chunk of memory. ``?replace=true``
replaces an existing id and version; without it that is a 409. A package is kept
only when the form arrived whole (its closing boundary read) and the file is an
archive of the kind its extension says; a file name with a path is refused.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from aiohttp import BodyPartReader, MultipartReader, web

from agent.errors import TentacleError
from agent.hub import ids
from agent.hub.api.collections import respond_page
from agent.hub.api.common import iso, note
from agent.hub.api.context import context_of
from agent.hub.api.errors import ApiError, bad_request, conflict, not_found
from agent.hub.api.routes import Routes, collection_path, space_of, space_path
from agent.hub.packages import (
    PackageContentError,
    PackageNameError,
    PackageTooLarge,
    Repository,
    check_archive,
    parse_name,
)
from agent.hub.store import packages as store_packages
from agent.hub.store.records import Row

REPOSITORY = "packages"  # HubContext.extras: the Repository
CHUNK = 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers around the file's bytes
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def repository_of(request: web.Request) -> Repository:
    repository = context_of(request).extras.get(REPOSITORY)
    if not isinstance(repository, Repository):
        raise ApiError(503, "this hub node has no package repository")
    return repository


def resource_id(row: Row) -> str:
    return f"packages-{row['package_id']}.{row['version']}"


def package_resource(row: Row) -> dict[str, Any]:
    base = space_path(row["space_id"], f"packages/{resource_id(row)}")
    return {
        "Id": resource_id(row),
        "SpaceId": ids.format_id(ids.SPACE, row["space_id"]),
        "PackageId": row["package_id"],
        "Version": row["version"],
        "Title": row["package_id"],
        "Summary": "",
        "Description": "",
        "ReleaseNotes": "",
        "FeedId": "feeds-builtin",
        "FileExtension": row["file_extension"],
        "PackageSizeBytes": row["size"],
        "Hash": row["sha256"],
        "Published": iso(row["published"]),
        "Links": {"Self": base, "Raw": f"{base}/raw"},
    }


def _replace_flag(request: web.Request) -> bool:
    text = request.query.get("replace", "false").strip().lower()
    if text not in TRUE + FALSE:
        raise bad_request(f"replace must be true or false, not {text[:40]!r}")
    return text in TRUE


async def _file_part(request: web.Request) -> tuple[MultipartReader, BodyPartReader]:
    """The form and its first part that is a file; 400 saying what is wrong otherwise."""
    if request.content_type != "multipart/form-data":
        raise bad_request(
            "send the package as multipart/form-data with one file field (e.g. curl -F "
            f"file=@Acme.Web.1.0.0.zip), not {request.content_type or 'no content type'}"
        )
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.filename is not None:
                return reader, part
            if isinstance(part, BodyPartReader):
                await part.release()
    except (ValueError, AssertionError) as error:
        raise bad_request(f"the multipart form cannot be read: {error}") from None
    raise bad_request("the form holds no file: send the package as a file field")


class UploadCut(TentacleError):
    """The form did not arrive whole: the message says what is missing."""


CUT = (
    "the upload ended before its closing boundary: the package did not arrive whole "
    "and was not kept; send it again"
)


async def _chunks(reader: MultipartReader, part: BodyPartReader) -> AsyncIterator[bytes]:
    """The file part's bytes; UploadCut (once all of them are yielded) unless its
    boundary and then the form's closing one arrived: a body that ends early (a
    chunked body cut short, or no closing boundary at all) is not a package."""
    try:
        while chunk := await part.read_chunk(CHUNK):
            yield chunk
        if not part.at_eof():  # the stream ended before the part's boundary
            raise UploadCut(CUT)
        while (rest := await reader.next()) is not None:  # fields after the file
            await rest.release()
    except ValueError as error:  # aiohttp: reading after the end, a wrong boundary
        raise UploadCut(f"{CUT} ({error})") from None
    if not reader.at_eof():
        raise UploadCut(CUT)


async def upload_package(request: web.Request) -> web.Response:
    space = await space_of(request)
    repository = repository_of(request)
    replace = _replace_flag(request)
    length = request.content_length
    if length is not None and length > repository.max_bytes + FORM_OVERHEAD:
        raise _too_large(repository, length)
    reader, part = await _file_part(request)
    try:
        # aiohttp's clients percent-encode the name; '%' is in no package's name
        name = parse_name(unquote(part.filename or ""))
    except PackageNameError as error:
        raise bad_request(str(error)) from None
    context = context_of(request)
    async with context.store.connect() as conn:
        existing = await store_packages.find(conn, space, name.package_id, name.version)
    if existing is not None and not replace:
        raise _exists(existing)
    try:
        stored = await repository.receive(
            _chunks(reader, part), functools.partial(check_archive, extension=name.extension)
        )
    except PackageTooLarge as error:
        raise ApiError(413, str(error)) from None
    except (UploadCut, PackageContentError) as error:
        raise bad_request(f"{part.filename}: {error}") from None
    values = store_packages.package_values(
        space, name.package_id, name.version, name.extension, stored.sha256, stored.size,
        context.now(),
    )  # fmt: skip
    row, replaced = await _record(request, space, values, replace)
    if replaced is not None and replaced != stored.sha256:
        async with context.store.connect() as conn:
            used = await store_packages.in_use(conn, replaced)
        repository.discard_unused(replaced, used)
    return web.json_response(package_resource(row), status=201)


def _too_large(repository: Repository, length: int) -> ApiError:
    return ApiError(
        413,
        f"the upload is {length} bytes: larger than this hub's package limit of "
        f"{repository.max_bytes} bytes",
    )


def _exists(row: Row) -> ApiError:
    return conflict(
        f"the package {row['package_id']} {row['version']} exists already "
        f"({resource_id(row)}); add ?replace=true to replace it"
    )


async def _record(
    request: web.Request, space: int, values: dict[str, Any], replace: bool
) -> tuple[Row, str | None]:
    """Write the package's row (a new one, or over the same id and version when
    ``replace``); returns the row and the hash it replaced, if any."""
    store = context_of(request).store
    package_id, version = values["package_id"], values["version"]
    try:
        async with store.transaction() as conn:
            existing = await store_packages.find(conn, space, package_id, version)
            replaced = None
            if existing is None:
                number = await store_packages.add(conn, values)
            elif replace:
                number, replaced = existing["id"], existing["sha256"]
                await store_packages.replace(conn, number, values)
            else:
                raise _exists(existing)
            shown = f"packages-{values['package_id']}.{values['version']}"
            verb = "replaced" if existing is not None else "uploaded"
            await note(conn, request, "BuiltInFeedPackagePushed", f"Package {shown} {verb}")
            row = await store_packages.find(conn, space, package_id, version)
    except sa.exc.IntegrityError:  # another upload of the same id and version won
        async with store.connect() as conn:
            winner = await store_packages.find(conn, space, package_id, version)
        if winner is None:
            raise
        raise _exists(winner) from None
    assert row is not None
    return row, replaced


async def list_packages(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        rows = await store_packages.listed(conn, space, request.query.get("filter"))
    items = [package_resource(row) for row in rows]
    return respond_page(
        request, "Package", collection_path(request, "packages"), items,
        ("skip", "take", "ids", "filter"),
    )  # fmt: skip


async def _package_or_404(request: web.Request) -> Row:
    space = await space_of(request)
    text = request.match_info["id"]
    async with context_of(request).store.connect() as conn:
        rows = await store_packages.listed(conn, space)
    wanted = text.lower()
    for row in rows:
        if resource_id(row).lower() == wanted:
            return row
    raise not_found(f"there is no package {text!r} in this space")


async def get_package(request: web.Request) -> web.Response:
    return web.json_response(package_resource(await _package_or_404(request)))


async def get_package_raw(request: web.Request) -> web.StreamResponse:
    row = await _package_or_404(request)
    path = repository_of(request).path(row["sha256"])
    if not path.is_file():
        raise not_found(f"the content of {resource_id(row)} is missing from the repository")
    name = f"{row['package_id']}.{row['version']}{row['file_extension']}"
    return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def add_routes(routes: Routes) -> None:
    routes.post("/packages/raw", upload_package)
    routes.get("/packages", list_packages)
    routes.get("/packages/{id:packages-[^/]+}", get_package)
    routes.get("/packages/{id:packages-[^/]+}/raw", get_package_raw)
