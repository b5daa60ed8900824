// The dashboard (#/): each pool's workers by health, and the queue.

import { empty, h, heading, statusBadge, table, when } from "./dom.js";
import { HEALTH } from "./counts.js";

export const routes = [{ pattern: /^(#\/?)?(\?.*)?$/, title: "Dashboard", render }];

async function render(ctx) {
  const [summary, active, recent] = await Promise.all([
    ctx.api.get("/api/workerpools/summary"),
    ctx.api.get("/api/tasks?take=20&states=Queued,Executing,Cancelling"),
    ctx.api.get("/api/tasks?take=8&states=Success,Failed,Canceled,TimedOut"),
  ]);
  ctx.main.append(
    heading("Dashboard"),
    h("section", { class: "section" }, h("h2", { text: "Worker pools" }), poolCards(summary)),
    h("section", { class: "section" }, h("h2", { text: "Running and queued" }),
      active.Items.length ? tasksTable(active.Items) : empty("Nothing is running or queued.")),
    h("section", { class: "section" }, h("h2", { text: "Recently finished" }),
      recent.Items.length ? tasksTable(recent.Items) : empty("No task has finished yet.")),
  );
}

function poolCards(summary) {
  const items = summary.WorkerPoolSummaries || [];
  if (!items.length) return empty("There is no worker pool yet.");
  return h("div", { class: "cards" }, items.map(poolCard));
}

function poolCard(item) {
  const pool = item.WorkerPool;
  const counts = item.MachineHealthStatusSummaries || {};
  const bars = HEALTH.filter((s) => counts[s]).map((s) =>
    h("li", {}, statusBadge(s), h("span", { class: "count", text: String(counts[s]) })));
  return h("a", { class: "card pool-card", href: `#/workers?pool=${encodeURIComponent(pool.Id)}`,
    "data-test": "pool-card" },
  h("div", { class: "card-title" }, h("strong", { text: pool.Name }),
    pool.IsDefault && h("span", { class: "tag", text: "default" })),
  h("p", { class: "muted", text: `${item.TotalMachines} worker${item.TotalMachines === 1 ? "" : "s"}`
    + (item.TotalDisabledMachines ? ` · ${item.TotalDisabledMachines} disabled` : "") }),
  bars.length ? h("ul", { class: "health-list" }, bars) : null);
}

/** A compact tasks table (the tasks view has the full one). */
export function tasksTable(tasks) {
  return table([
    { label: "Task", cell: (t) => h("a", { href: `#/tasks/${t.Id}`, text: t.Description || t.Name }) },
    { label: "State", cell: (t) => statusBadge(t.State) },
    { label: "Queued", cell: (t) => when(t.QueueTime) },
    { label: "Duration", cell: (t) => t.Duration || "—" },
    { label: "By", cell: (t) => t.QueuedBy || "—" },
  ], tasks, (t) => ({ "data-test": "task-row", "data-id": t.Id }));
}
