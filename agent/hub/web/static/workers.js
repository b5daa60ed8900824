// The workers view (#/workers?pool=&status=&name=): workers grouped by pool, with
// their health, how they connect and what they run on; filters kept in the link;
// check health now, disable/enable and delete (after a confirmation).

import { ApiError, query } from "./api.js";
import {
  clear, confirmDialog, empty, h, hashQuery, hashWith, heading, megabytes, since, statusBadge, table,
} from "./dom.js";
import { HEALTH } from "./counts.js";
import { routes as sshRoutes } from "./sshform.js";

export const routes = [...sshRoutes, { pattern: /^#\/workers(\?.*)?$/, title: "Workers", render }];

const REFRESH_MS = 4000;
const SHOWN_AT_MOST = 1000; // workers in one look; the filters narrow a bigger fleet
const STYLES = { TentaclePassive: "Listening", TentacleActive: "Polling", Ssh: "SSH" };
const HEALTH_WORDS = { HasWarnings: "Has warnings" };

async function render(ctx) {
  const pools = await ctx.api.get("/api/workerpools/all");
  const filters = readFilters();
  const list = h("div", { class: "worker-groups", "data-test": "worker-groups" });
  const addSsh = ctx.canChange
    ? h("a", { class: "button primary action", href: "#/workers/new-ssh", "data-test": "action-new-ssh",
      text: "Add an SSH worker" })
    : null;
  ctx.main.append(heading("Workers", addSsh), filterForm(pools, filters, () => show(ctx, pools, list)), list);
  await show(ctx, pools, list);
  const timer = setInterval(() => show(ctx, pools, list).catch(() => {}), REFRESH_MS);
  ctx.onLeave(() => clearInterval(timer));
}

function readFilters() {
  const params = hashQuery();
  return { pool: params.get("pool") || "", status: params.get("status") || "",
    name: params.get("name") || "" };
}

function filterForm(pools, filters, changed) {
  const pool = h("select", { id: "filter-pool", "data-test": "filter-pool" },
    h("option", { value: "", text: "All pools" }),
    pools.map((p) => h("option", { value: p.Id, text: p.Name, selected: p.Id === filters.pool })));
  const status = h("select", { id: "filter-status", "data-test": "filter-status" },
    h("option", { value: "", text: "Any health" }),
    HEALTH.map((s) => h("option", { value: s, text: HEALTH_WORDS[s] || s, selected: s === filters.status })));
  const name = h("input", { id: "filter-name", type: "search", "data-test": "filter-name",
    placeholder: "Part of a name", value: filters.name, autocomplete: "off" });
  let pending = null;
  const update = () => {
    clearTimeout(pending);
    // the filters go in the link (replaceState: no history entry per letter typed)
    history.replaceState(null, "", hashWith("#/workers", { pool: pool.value, status: status.value,
      name: name.value.trim() }));
    changed();
  };
  pool.addEventListener("change", update);
  status.addEventListener("change", update);
  name.addEventListener("input", () => { clearTimeout(pending); pending = setTimeout(update, 250); });
  const form = h("form", { class: "filters", role: "search", on: { submit: (e) => { e.preventDefault(); update(); } } },
    filter("Pool", pool), filter("Health", status), filter("Name", name));
  return form;
}

function filter(label, control) {
  return h("div", { class: "filter" }, h("label", { for: control.id, text: label }), control);
}

/** Fetches the workers the filters ask for and shows them, if anything changed. */
async function show(ctx, pools, list) {
  const filters = readFilters();
  const page = await ctx.api.get(`/api/workers${query({ take: SHOWN_AT_MOST, partialName: filters.name,
    workerpoolIds: filters.pool, healthStatuses: filters.status })}`);
  const shown = JSON.stringify([page.Items, filters]);
  if (list.dataset.shown === shown) return;
  list.dataset.shown = shown;
  clear(list).append(...groups(ctx, pools, page.Items, filters, () => {
    delete list.dataset.shown;
    show(ctx, pools, list).catch((error) => ctx.notice(error.message, "error"));
    ctx.refresh();
  }));
  if (page.TotalResults > page.Items.length) {
    list.append(h("p", { class: "muted", "data-test": "more-workers",
      text: `Showing ${page.Items.length} of ${page.TotalResults} workers: filter by pool, health or name to see the others.` }));
  }
}

function groups(ctx, pools, workers, filters, changed) {
  const filtering = filters.pool || filters.status || filters.name;
  if (!workers.length) {
    return [empty(filtering ? "No worker matches these filters." : "No worker is registered yet. "
      + "Register one with `tentacle register-worker`, add an SSH worker, or add it with POST /api/workers.")];
  }
  const known = new Set(pools.map((p) => p.Id));
  const shownPools = filters.pool ? pools.filter((p) => p.Id === filters.pool) : pools;
  const sections = shownPools
    .map((pool) => [pool, workers.filter((w) => (w.WorkerPoolIds || []).includes(pool.Id))])
    .filter(([, members]) => members.length)
    .map(([pool, members]) => group(ctx, pool.Name, pool.Id, members, changed));
  const orphans = workers.filter((w) => !(w.WorkerPoolIds || []).some((id) => known.has(id)));
  if (orphans.length) sections.push(group(ctx, "In no pool", "", orphans, changed));
  return sections;
}

function group(ctx, title, poolId, workers, changed) {
  const healthy = workers.filter((w) => w.HealthStatus === "Healthy" && !w.IsDisabled).length;
  return h("section", { class: "group", "data-test": "worker-group", "data-pool": poolId },
    h("div", { class: "group-head" }, h("h2", { text: title }),
      h("span", { class: "muted", text: `${workers.length} worker${workers.length === 1 ? "" : "s"}, ${healthy} healthy` })),
    workersTable(ctx, workers, changed));
}

function workersTable(ctx, workers, changed) {
  const columns = [
    { label: "Worker", class: "name-cell col-name", cell: nameCell },
    { label: "Health", class: "col-health", cell: healthCell },
    { label: "Connects", class: "col-style", cell: styleOf },
    { label: "OS", class: "col-os", cell: osCell },
    { label: "Agent", class: "col-num", cell: (w) => w.AgentVersion || "—" },
    { label: "Free disk", class: "col-num", cell: (w) => megabytes(w.FreeDiskSpaceMegabytes) },
    { label: "Running steps", class: "col-num", cell: (w) => String(w.RunningSteps ?? "—") },
  ];
  if (ctx.canChange) {
    columns.push({ label: "Actions", class: "actions col-actions", cell: (w) => actions(ctx, w, changed) });
  }
  const rowAttrs = (w) => ({ class: w.IsDisabled ? "row-disabled" : null, "data-test": "worker-row",
    "data-id": w.Id, "data-name": w.Name });
  return table(columns, workers, rowAttrs, "workers");
}

function styleOf(worker) {
  const style = worker.Endpoint?.CommunicationStyle;
  return STYLES[style] || style || "—";
}

function osCell(worker) {
  return [worker.OperatingSystem || "—",
    worker.Architecture ? h("span", { class: "sub", text: worker.Architecture }) : null];
}

function nameCell(worker) {
  return [h("strong", { "data-test": "worker-name", text: worker.Name }),
    h("span", { class: "sub mono", text: worker.Endpoint?.Uri || worker.Uri || "" })];
}

function healthCell(worker) {
  return [
    h("div", { class: "badges" }, statusBadge(worker.HealthStatus),
      worker.IsDisabled ? [" ", statusBadge("Disabled")] : null,
      worker.IsDraining ? [" ", statusBadge("Draining")] : null),
    h("span", { class: "sub", "data-test": "last-checked" }, "checked ", since(worker.LastCheckedOn)),
    worker.StatusSummary && worker.StatusSummary !== worker.HealthStatus
      ? h("span", { class: "sub summary", "data-test": "status-summary", text: worker.StatusSummary }) : null,
  ];
}

function actions(ctx, worker, changed) {
  const button = (test, text, fn, extra = "") => h("button", { type: "button", class: `button small action ${extra}`,
    "data-test": test, text, on: { click: (e) => act(ctx, e.currentTarget, fn) } });
  return [
    button("action-health", "Check health", () => checkHealth(ctx, worker)),
    worker.IsDisabled
      ? button("action-enable", "Enable", () => setDisabled(ctx, worker, false).then(changed))
      : button("action-disable", "Disable", () => setDisabled(ctx, worker, true).then(changed)),
    button("action-delete", "Delete", () => remove(ctx, worker).then(changed), "danger"),
  ];
}

/** Runs fn with its button disabled; the hub's refusal becomes a notice. */
async function act(ctx, button, fn) {
  button.disabled = true;
  try {
    await fn();
  } catch (error) {
    ctx.notice(error instanceof ApiError ? `The hub refused: ${error.message}` : String(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function checkHealth(ctx, worker) {
  const task = await ctx.api.post("/api/tasks", { Name: "Health",
    Description: `Check health: ${worker.Name}`, Arguments: { MachineIds: [worker.Id] } });
  ctx.notice([`Health check of ${worker.Name} queued: `,
    h("a", { href: `#/tasks/${task.Id}`, "data-test": "health-task", text: task.Id })], "ok");
}

async function setDisabled(ctx, worker, disabled) {
  const current = await ctx.api.get(`/api/workers/${worker.Id}`);
  await ctx.api.put(`/api/workers/${worker.Id}`, { ...current, IsDisabled: disabled });
  ctx.notice(`${worker.Name} is ${disabled ? "disabled: no new step runs on it" : "enabled again"}.`, "ok");
}

async function remove(ctx, worker) {
  const sure = await confirmDialog({ title: `Delete ${worker.Name}?`,
    text: "The hub forgets this worker: no step runs on it and its health is no longer checked. "
      + "The agent itself keeps running; register it again to bring it back.", confirm: "Delete worker" });
  if (!sure) return;
  await ctx.api.del(`/api/workers/${worker.Id}`);
  ctx.notice(`${worker.Name} is deleted.`, "ok");
}
