"""/api/workers: the machines that run work (Octopus's WorkerResource).

A worker is listening (``TentaclePassive``, ``https://host:port/``), polling
(``TentacleActive``, ``poll://subscription/``) or SSH. The hub keeps the
agent's certificate when it is given (registration sends it): the polling port
trusts certificates, not bare thumbprints.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.certs import (
    certificate_pem,
    load_certificate,
    parse_thumbprint,
    sha1_thumbprint,
)
from agent.errors import CertificateError, TentacleError
from agent.hub import ids
from agent.hub.api.bodies import Fields, json_object
from agent.hub.api.collections import id_filter, paging, respond_counted
from agent.hub.api.common import is_unique_violation, iso, note, row_or_404, stamp
from agent.hub.api.context import caller_of, context_of
from agent.hub.api.errors import ApiError, bad_request, conflict, invalid
from agent.hub.api.paging import Page
from agent.hub.api.pools import pool_resource, pools_of
from agent.hub.api.routes import Routes, collection_path, space_of, space_path
from agent.hub.rules.filters import BadFilter
from agent.hub.rules.ssh import (
    SSH_PORT,
    fingerprint_problem,
    host_of,
    port_problem,
    ssh_uri,
)
from agent.hub.rules.ssh import STYLE as SSH
from agent.hub.rules.uris import listening_uri_problem
from agent.hub.rules.workers import (
    HEALTH_STATUSES,
    SUPPORTED_STYLES,
    legacy_status,
    worker_filters,
)
from agent.hub.store import steps as store_steps
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import Row, fetch_all, fetch_one
from agent.hub.store.text import LowerText
from agent.hub.store.worker_queries import WorkerQuery, count, memberships, worker_rows

_POLLING_URI = re.compile(r"^poll://[a-z2-9]{20}/$")


def worker_resource(row: Row, pools: list[int], running: int) -> dict[str, Any]:
    """The worker as the API shows it; ``running``: how many steps run on it now."""
    worker_id = ids.format_id(ids.WORKER, row["id"])
    base = space_path(row["space_id"], f"workers/{worker_id}")
    facts = row["facts"] or {}
    return {
        "Id": worker_id,
        "SpaceId": ids.format_id(ids.SPACE, row["space_id"]),
        "Name": row["name"],
        "Thumbprint": row["thumbprint"],
        "Uri": row["uri"],
        "IsDisabled": row["is_disabled"],
        "MachinePolicyId": ids.format_id(ids.MACHINE_POLICY, row["machine_policy_id"]),
        "WorkerPoolIds": [ids.format_id(ids.WORKER_POOL, p) for p in sorted(pools)],
        "HealthStatus": row["health_status"],
        "Status": legacy_status(row["health_status"], row["is_disabled"]),
        "StatusSummary": row["status_summary"],
        # `tentacle drain` on the worker: it starts no new scripts, so it gets no steps
        "IsDraining": facts.get("Draining") is True,
        "DrainingSince": facts.get("DrainingSince") if facts.get("Draining") is True else None,
        "HasLatestCalamari": True,
        "IsInProcess": False,
        "OperatingSystem": facts.get("OperatingSystem", "Unknown"),
        "Architecture": facts.get("Architecture", "Unknown"),
        "ShellName": facts.get("ShellName", "Unknown"),
        "ShellVersion": facts.get("ShellVersion", "Unknown"),
        "AgentVersion": facts.get("AgentVersion"),
        "FreeDiskSpaceMegabytes": facts.get("FreeDiskSpaceMegabytes"),
        "LastCheckedOn": iso(row["last_checked"]),
        "RunningSteps": running,
        "HasCertificate": bool(row["certificate"]),
        "Endpoint": _endpoint(row),
        "LastModifiedOn": iso(row["modified_on"]),
        "LastModifiedBy": row["modified_by"],
        "Links": {"Self": base, "Connection": f"{base}/connection"},
    }


def _endpoint(row: Row) -> dict[str, Any]:
    """The worker's endpoint: an agent's Uri and Thumbprint, or an SSH worker's Host,
    Port, pinned Fingerprint and AccountId (Octopus's SshEndpointResource)."""
    endpoint = {
        "CommunicationStyle": row["communication_style"],
        "Uri": row["uri"],
        "Thumbprint": row["thumbprint"],
        "Id": None,
    }
    if row["communication_style"] == SSH:
        account = row["account_id"]
        endpoint |= {
            "Host": row["ssh_host"],
            "Port": row["ssh_port"],
            "Fingerprint": row["ssh_fingerprint"],
            "AccountId": None if account is None else ids.format_id(ids.ACCOUNT, account),
        }
    return endpoint


LIST_TEMPLATE = (
    "skip",
    "take",
    "ids",
    "name",
    "partialName",
    "workerpoolIds",
    "healthStatuses",
    "commStyles",
    "thumbprint",
    "isDisabled",
)


def worker_query(
    request: web.Request, space: int, *, pool_id: int | None = None, policy_id: int | None = None
) -> WorkerQuery:
    """The workers a request asks for: ``ids``, ``name`` and ``partialName`` (every
    collection's) and the workers' own filters (400 naming a bad one)."""
    try:
        filters = worker_filters(request.query)
    except BadFilter as error:
        raise bad_request(str(error)) from None
    wanted = id_filter(request)
    return WorkerQuery(
        space_id=space,
        ids=None if wanted is None else frozenset(wanted),
        name=request.query.get("name"),
        partial_name=request.query.get("partialName"),
        filters=filters,
        pool_id=pool_id,
        policy_id=policy_id,
    )


async def workers_page(
    conn: AsyncConnection, query: WorkerQuery, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """The page's workers as resources, and how many the query finds in all."""
    rows = await worker_rows(conn, query, page.skip, page.take)
    total = await count(conn, query)
    return await resources(conn, rows), total


async def resources(
    conn: AsyncConnection, rows: list[tuple[Row, list[int]]]
) -> list[dict[str, Any]]:
    """The workers (each with its pools) as resources, with the steps running on each."""
    running = await store_steps.running_on(conn, [row["id"] for row, _ in rows])
    return [worker_resource(row, pools, running.get(row["id"], 0)) for row, pools in rows]


async def respond_workers(
    request: web.Request, query: WorkerQuery, path: str, template: tuple[str, ...] | None = None
) -> web.Response:
    page = paging(request)
    async with context_of(request).store.connect() as conn:
        items, total = await workers_page(conn, query, page)
    if template is None:
        return respond_counted(request, "Worker", path, items, total, page)
    return respond_counted(request, "Worker", path, items, total, page, template)


async def list_workers(request: web.Request) -> web.Response:
    space = await space_of(request)
    query = worker_query(request, space)
    return await respond_workers(request, query, collection_path(request, "workers"), LIST_TEMPLATE)


async def all_workers(request: web.Request) -> web.Response:
    space = await space_of(request)
    query = worker_query(request, space)
    async with context_of(request).store.connect() as conn:
        rows = await worker_rows(conn, query)
        items = await resources(conn, rows)
    return web.json_response(items)


async def one_worker(conn: AsyncConnection, request: web.Request, space: int) -> dict[str, Any]:
    row = await row_or_404(conn, t.workers, ids.WORKER, request.match_info["id"], space)
    [resource] = await resources(
        conn, [(row, (await memberships(conn, [row["id"]])).get(row["id"], []))]
    )
    return resource


async def get_worker(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        return web.json_response(await one_worker(conn, request, space))


async def get_connection(request: web.Request) -> web.Response:
    """The last health check's connection status and log."""
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        row = await row_or_404(conn, t.workers, ids.WORKER, request.match_info["id"], space)
    worker_id = ids.format_id(ids.WORKER, row["id"])
    return web.json_response(
        {
            "Id": f"MachineConnectionStatuses-{row['id']}",
            "MachineId": worker_id,
            "Status": "Unknown"
            if row["last_checked"] is None
            else ("Offline" if row["health_status"] == "Unavailable" else "Online"),
            "CurrentTentacleVersion": (row["facts"] or {}).get("AgentVersion"),
            "LastChecked": iso(row["last_checked"]),
            "Logs": row["connection_log"],
            "Links": {"Self": space_path(row["space_id"], f"workers/{worker_id}/connection")},
        }
    )


async def _pool_ids(
    conn: AsyncConnection, space: int, given: list[str], fields: Fields
) -> list[int]:
    found: list[int] = []
    rows = await fetch_all(
        conn, sa.select(t.worker_pools.c.id).where(t.worker_pools.c.space_id == space)
    )
    existing = {row["id"] for row in rows}
    for text in given:
        number = ids.try_parse_id(ids.WORKER_POOL, text)
        if number is None or number not in existing:
            fields.errors.append(f"WorkerPoolIds: there is no worker pool {text!r}")
        else:
            found.append(number)
    if not given:
        fields.errors.append("WorkerPoolIds must name at least one worker pool")
    return found


async def _policy_id(conn: AsyncConnection, space: int, given: str | None, fields: Fields) -> int:
    table = t.machine_policies
    if given is None:
        row = await fetch_one(
            conn, sa.select(table.c.id).where(table.c.space_id == space, table.c.is_default)
        )
        assert row is not None
        return int(row["id"])
    found = await _id_in_space(conn, table, ids.MACHINE_POLICY, space, given)
    if found is None:
        fields.errors.append(f"MachinePolicyId: there is no machine policy {given!r}")
        return 0
    return found


async def _id_in_space(
    conn: AsyncConnection, table: sa.Table, kind: str, space: int, given: str
) -> int | None:
    """The row number of ``given`` (an id of ``kind``) if ``table`` has it in ``space``."""
    number = ids.try_parse_id(kind, given)
    if number is None:
        return None
    query = sa.select(table.c.id).where(table.c.space_id == space, table.c.id == number)
    row = await fetch_one(conn, query)
    return None if row is None else int(row["id"])


def _certificate(fields: Fields) -> tuple[str | None, str | None]:
    """(PEM, SHA-1 thumbprint) of the ``Certificate`` field, if one was sent."""
    text = fields.text("Certificate")
    if text is None:
        return None, None
    try:
        certificate = load_certificate(text.encode(), "Certificate")
    except CertificateError as error:
        fields.errors.append(str(error))
        return None, None
    return certificate_pem(certificate), sha1_thumbprint(certificate)


def _style(ends: Fields, current: Row | None) -> str | None:
    """The endpoint's ``CommunicationStyle``: one the hub can reach."""
    given = ends.body.get("CommunicationStyle")
    expected = f"one of {', '.join(SUPPORTED_STYLES)}"
    before = len(ends.errors)
    style = ends.choice("CommunicationStyle", SUPPORTED_STYLES, None)
    if style is None and current is not None and given is None:  # a PUT may leave it out
        return str(current["communication_style"])
    if style is None and len(ends.errors) == before:
        ends.errors.append(f"CommunicationStyle is required: {expected}")
    return style


async def _account_id(
    conn: AsyncConnection, space: int, ends: Fields, current: Row | None
) -> int | None:
    """``Endpoint.AccountId``: an account of this space (kept from ``current`` if left out)."""
    given = ends.body.get("AccountId")
    if given is None and current is not None and current["account_id"] is not None:
        return int(current["account_id"])
    if not isinstance(given, str) or not given.strip():
        ends.errors.append(
            "AccountId is required for an SSH worker: the id of an account (Accounts-N, "
            "see /api/accounts) it logs in with"
        )
        return None
    found = await _id_in_space(conn, t.accounts, ids.ACCOUNT, space, given)
    if found is None:
        ends.errors.append(f"AccountId: there is no account {given!r} in this space")
    return found


async def _ssh_values(
    conn: AsyncConnection, space: int, ends: Fields, current: Row | None
) -> dict[str, Any]:
    """The columns of an SSH endpoint (``Host``, ``Port``, ``Fingerprint``,
    ``AccountId``), each kept from ``current`` (an SSH worker) when left out."""
    was_ssh = current is not None and current["communication_style"] == SSH
    body = ends.body
    given_host = body.get("Host", current["ssh_host"] if was_ssh and current else None)
    host, problem = host_of(given_host, "Host", "the SSH server's host name")
    if problem:
        ends.errors.append(problem)
    port = body.get("Port")
    if port is None:
        port = current["ssh_port"] if was_ssh and current else SSH_PORT
    if problem := port_problem(port, "Port"):
        ends.errors.append(problem)
    fingerprint = body.get("Fingerprint")
    if fingerprint is None and was_ssh and current:
        fingerprint = current["ssh_fingerprint"]
    if problem := fingerprint_problem(fingerprint, "Fingerprint"):
        ends.errors.append(problem)
    account = await _account_id(conn, space, ends, current if was_ssh else None)
    return {
        "uri": ssh_uri(host, port) if isinstance(port, int) else "",
        "thumbprint": None,
        "certificate": None,
        "ssh_host": host,
        "ssh_port": port,
        "ssh_fingerprint": fingerprint.strip() if isinstance(fingerprint, str) else None,
        "account_id": account,
    }


async def _worker_values(
    conn: AsyncConnection, space: int, body: dict[str, Any], current: Row | None
) -> tuple[dict[str, Any], list[int]]:
    """The columns and pools a POST or PUT body asks for; 422 naming every bad field."""
    fields = Fields(body)
    given_endpoint = body.get("Endpoint")
    endpoint: dict[str, Any] = given_endpoint if isinstance(given_endpoint, dict) else {}
    if "Endpoint" in body and not isinstance(body.get("Endpoint"), dict):
        fields.errors.append("Endpoint must be an object")
    ends = Fields(endpoint)
    style = _style(ends, current)
    if style == SSH:
        values = await _ssh_values(conn, space, ends, current)
    else:
        values = _agent_values(fields, ends, style, current)
    values |= {
        "name": fields.name(),
        "communication_style": style,
        "is_disabled": fields.boolean("IsDisabled", current["is_disabled"] if current else False),
    }
    pools = await _pool_ids(conn, space, fields.strings("WorkerPoolIds", required=True), fields)
    policy_given = fields.text("MachinePolicyId")
    values["machine_policy_id"] = (
        await _policy_id(conn, space, policy_given, fields)
        if (policy_given or current is None)
        else current["machine_policy_id"]
    )
    ends.errors = [f"Endpoint.{error}" for error in ends.errors]
    if fields.errors or ends.errors:
        raise invalid(fields.errors + ends.errors)
    return values, pools


def _agent_values(
    fields: Fields, ends: Fields, style: str | None, current: Row | None
) -> dict[str, Any]:
    """The columns of an agent's endpoint: its Uri, thumbprint and certificate."""
    uri = ends.text("Uri") or fields.text("Uri") or (current["uri"] if current else None)
    if uri is None:
        fields.errors.append("Endpoint.Uri is required (https://HOST:PORT/ or poll://ID/)")
    elif style == "TentaclePassive" and (problem := listening_uri_problem(uri)):
        fields.errors.append(problem)
    elif style == "TentacleActive" and not _POLLING_URI.match(uri):
        fields.errors.append(
            f"Endpoint.Uri must be poll://SUBSCRIPTION/ (20 letters and digits)"
            f" for a polling worker, not {uri!r}"
        )
    pem, from_pem = _certificate(fields)
    thumbprint_text = fields.text("Thumbprint") or ends.text("Thumbprint")
    thumbprint = from_pem or (current["thumbprint"] if current else None)
    if thumbprint_text is not None:
        try:
            thumbprint = parse_thumbprint(thumbprint_text)
        except TentacleError as error:
            fields.errors.append(f"Thumbprint: {error}")
    if thumbprint is None:
        fields.errors.append("Thumbprint is required (the agent's certificate, SHA-1 hex)")
    elif from_pem is not None and thumbprint != from_pem:
        fields.errors.append(
            f"Thumbprint {thumbprint} is not the thumbprint of Certificate ({from_pem})"
        )
    if style == "TentacleActive" and pem is None and not (current and current["certificate"]):
        fields.errors.append(
            "Certificate (the agent's PEM) is required for a polling worker: "
            "the hub's polling port trusts certificates, not thumbprints"
        )
    values: dict[str, Any] = {
        "uri": uri,
        "thumbprint": thumbprint,
        "ssh_host": None,
        "ssh_port": None,
        "ssh_fingerprint": None,
        "account_id": None,
    }
    if pem is not None:
        values["certificate"] = pem
    return values


async def _duplicate(
    conn: AsyncConnection, space: int, values: dict[str, Any], exclude: int | None
) -> str | None:
    table = t.workers
    # names are one whatever their case, as in Octopus (and the index on lower(name))
    same = [LowerText(table.c.name) == values["name"].lower()]
    if values["thumbprint"] is not None:
        same.append(table.c.thumbprint == values["thumbprint"])
    if values["account_id"] is not None:  # one SSH worker per login on a server
        same.append(
            sa.and_(
                table.c.ssh_host == values["ssh_host"],
                table.c.ssh_port == values["ssh_port"],
                table.c.account_id == values["account_id"],
            )
        )
    query = sa.select(table.c.id, table.c.name, table.c.thumbprint, table.c.account_id).where(
        table.c.space_id == space, sa.or_(*same)
    )
    for row in await fetch_all(conn, query):
        if row["id"] == exclude:
            continue
        other = ids.format_id(ids.WORKER, row["id"])
        if values["thumbprint"] is not None and row["thumbprint"] == values["thumbprint"]:
            return f"the worker {other} ({row['name']}) has the thumbprint {values['thumbprint']}"
        if row["name"].lower() != values["name"].lower():
            return (
                f"the worker {other} ({row['name']}) logs in to {values['uri']} with the "
                f"account {ids.format_id(ids.ACCOUNT, values['account_id'])} already"
            )
        return f"a worker named {row['name']!r} exists already ({other})"
    return None


async def _race_conflict(
    request: web.Request, space: int, values: dict[str, Any], exclude: int | None
) -> ApiError:
    """The 409 for a unique violation after ``_duplicate`` passed: a request at the
    same time took the name or the thumbprint; looked up again, on a connection of
    its own (the failed transaction is over), to name the worker that won."""
    async with context_of(request).store.connect() as conn:
        problem = await _duplicate(conn, space, values, exclude)
    return conflict(problem or "a worker with this name or thumbprint exists already")


async def _set_pools(
    conn: AsyncConnection, worker: int, pools: list[int], new: bool = False
) -> None:
    """Make ``pools`` the worker's (``new``: it has none yet), in two statements."""
    members = t.worker_pool_members
    if not new:
        await conn.execute(sa.delete(members).where(members.c.worker_id == worker))
    rows = [{"worker_id": worker, "pool_id": pool} for pool in sorted(set(pools))]
    if rows:
        await conn.execute(sa.insert(members), rows)


async def create_worker(request: web.Request) -> web.Response:
    space = await space_of(request)
    body = await json_object(request)
    values: dict[str, Any] = {}
    try:
        async with context_of(request).store.transaction() as conn:
            values, pools = await _worker_values(conn, space, body, None)
            if (problem := await _duplicate(conn, space, values, None)) is not None:
                raise conflict(problem)
            result = await conn.execute(
                sa.insert(t.workers)
                .values(
                    space_id=space,
                    health_status="Unknown",
                    status_summary="Not checked yet",
                    facts={},
                    connection_log=[],
                    **values,
                    **stamp(request),
                )
                .returning(t.workers.c.id)
            )
            number = int(result.scalar_one())
            await _set_pools(conn, number, pools, new=True)
            worker_id = ids.format_id(ids.WORKER, number)
            await note(conn, request, "Created", f"Worker {values['name']} created", worker_id)
            # a new worker is checked at once, as Octopus does after registration
            await store_tasks.submit(
                conn,
                space,
                "Health",
                f"Check health of {values['name']}",
                {"MachineIds": [worker_id]},
                context_of(request).now(),
                caller_of(request).name,
            )
            request.match_info["id"] = worker_id
            resource = await one_worker(conn, request, space)
    except sa.exc.IntegrityError as error:
        if not is_unique_violation(error):
            raise
        raise await _race_conflict(request, space, values, None) from None  # a race lost
    await context_of(request).changed("workers-added", [number])
    await context_of(request).changed("tasks")
    return web.json_response(resource, status=201)


async def update_worker(request: web.Request) -> web.Response:
    space = await space_of(request)
    body = await json_object(request)
    values: dict[str, Any] = {}
    current: Row | None = None
    try:
        async with context_of(request).store.transaction() as conn:
            current = await row_or_404(conn, t.workers, ids.WORKER, request.match_info["id"], space)
            values, pools = await _worker_values(conn, space, body, current)
            if (problem := await _duplicate(conn, space, values, current["id"])) is not None:
                raise conflict(problem)
            await conn.execute(
                sa.update(t.workers)
                .where(t.workers.c.id == current["id"])
                .values(**values, **stamp(request))
            )
            await _set_pools(conn, current["id"], pools)
            await note(
                conn,
                request,
                "Modified",
                f"Worker {values['name']} modified",
                ids.format_id(ids.WORKER, current["id"]),
            )
            resource = await one_worker(conn, request, space)
    except sa.exc.IntegrityError as error:
        if not is_unique_violation(error) or current is None:
            raise
        raise await _race_conflict(request, space, values, current["id"]) from None
    await context_of(request).changed("workers", [current["id"]])
    return web.json_response(resource)


async def delete_worker(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.transaction() as conn:
        row = await row_or_404(conn, t.workers, ids.WORKER, request.match_info["id"], space)
        await conn.execute(
            sa.delete(t.worker_pool_members).where(t.worker_pool_members.c.worker_id == row["id"])
        )
        await conn.execute(sa.delete(t.workers).where(t.workers.c.id == row["id"]))
        await note(
            conn,
            request,
            "Deleted",
            f"Worker {row['name']} deleted",
            ids.format_id(ids.WORKER, row["id"]),
        )
    await context_of(request).changed("workers", [row["id"]])
    return web.json_response(None)


async def pool_workers(request: web.Request) -> web.Response:
    """/api/workerpools/{id}/workers: the pool's members, as a page (the workers' filters
    apply)."""
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        pool = await row_or_404(
            conn, t.worker_pools, ids.WORKER_POOL, request.match_info["id"], space
        )
    pool_id = ids.format_id(ids.WORKER_POOL, pool["id"])
    query = worker_query(request, space, pool_id=pool["id"])
    path = collection_path(request, f"workerpools/{pool_id}/workers")
    return await respond_workers(request, query, path)


async def policy_workers(request: web.Request) -> web.Response:
    """/api/machinepolicies/{id}/workers: the policy's workers, as a page (the workers'
    filters apply)."""
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        policy = await row_or_404(
            conn, t.machine_policies, ids.MACHINE_POLICY, request.match_info["id"], space
        )
    policy_id = ids.format_id(ids.MACHINE_POLICY, policy["id"])
    query = worker_query(request, space, policy_id=policy["id"])
    path = collection_path(request, f"machinepolicies/{policy_id}/workers")
    return await respond_workers(request, query, path)


async def _health_by_pool(
    conn: AsyncConnection, space: int
) -> tuple[list[Row], dict[int, list[Row]]]:
    """Every worker of the space (id, health, disabled only), by name, and by pool."""
    workers, members = t.workers.c, t.worker_pool_members.c
    rows = await fetch_all(
        conn,
        sa.select(workers.id, workers.health_status, workers.is_disabled)
        .where(workers.space_id == space)
        .order_by(workers.name, workers.id),
    )
    links = await fetch_all(
        conn,
        sa.select(members.worker_id, members.pool_id)
        .join(t.workers, t.workers.c.id == members.worker_id)
        .where(workers.space_id == space),
    )
    pools_of_worker: dict[int, list[int]] = {}
    for link in links:
        pools_of_worker.setdefault(link["worker_id"], []).append(link["pool_id"])
    by_pool: dict[int, list[Row]] = {}
    for row in rows:
        for pool in pools_of_worker.get(row["id"], []):
            by_pool.setdefault(pool, []).append(row)
    return rows, by_pool


async def pools_summary(request: web.Request) -> web.Response:
    """/api/workerpools/summary: each pool with its workers counted by health status."""
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        pools = await pools_of(conn, space)
        workers, by_pool = await _health_by_pool(conn, space)
    summaries = []
    for pool in pools:
        members = by_pool.get(pool["id"], [])
        counts = {status: 0 for status in HEALTH_STATUSES}
        for worker in members:
            counts[worker["health_status"]] = counts.get(worker["health_status"], 0) + 1
        summaries.append(
            {
                "WorkerPool": pool_resource(pool),
                "TotalMachines": len(members),
                "MachineHealthStatusSummaries": counts,
                "MachineIdsForHealthStatus": {
                    status: [
                        ids.format_id(ids.WORKER, w["id"])
                        for w in members
                        if w["health_status"] == status
                    ]
                    for status in HEALTH_STATUSES
                },
                "TotalDisabledMachines": sum(bool(w["is_disabled"]) for w in members),
            }
        )
    return web.json_response(
        {
            "WorkerPoolSummaries": summaries,
            "TotalMachines": len(workers),
            "TotalDisabledMachines": sum(bool(w["is_disabled"]) for w in workers),
        }
    )


def add_routes(routes: Routes) -> None:
    routes.get("/workers", list_workers)
    routes.get("/workers/all", all_workers)
    routes.post("/workers", create_worker)
    routes.get("/workers/{id:Workers-[0-9]+}", get_worker)
    routes.put("/workers/{id:Workers-[0-9]+}", update_worker)
    routes.delete("/workers/{id:Workers-[0-9]+}", delete_worker)
    routes.get("/workers/{id:Workers-[0-9]+}/connection", get_connection)
    routes.get("/workerpools/summary", pools_summary)
    routes.get("/workerpools/{id:WorkerPools-[0-9]+}/workers", pool_workers)
    routes.get("/machinepolicies/{id:MachinePolicies-[0-9]+}/workers", policy_workers)
