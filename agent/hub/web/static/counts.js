// The counts at the top of every page: workers per health status, tasks
// running and queued against the hub's task cap.

import { ApiError } from "./api.js";
import { clear, h } from "./dom.js";

export const HEALTH = ["Healthy", "HasWarnings", "Unhealthy", "Unavailable", "Unknown"];

async function optional(promise) {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/** {health: {Healthy: n...}, disabled, workers, running, queued, cap|null}. */
export async function loadCounts(api) {
  const [all, page, nodes] = await Promise.all([
    api.get("/api/workers/all"),
    api.get("/api/tasks?take=1"),
    optional(api.get("/api/octopusservernodes")),
  ]);
  const health = Object.fromEntries(HEALTH.map((s) => [s, 0]));
  let disabled = 0;
  for (const worker of all) {
    if (worker.IsDisabled) disabled += 1;
    else health[worker.HealthStatus in health ? worker.HealthStatus : "Unknown"] += 1;
  }
  const tasks = await taskCounts(api, page);
  const items = nodes ? nodes.Items || [] : null;
  return {
    health, disabled, workers: all.length,
    running: items ? items.reduce((n, node) => n + (node.RunningTasks || 0), 0) : tasks.running,
    queued: tasks.queued,
    cap: items ? items.reduce((n, node) => n + (node.MaxConcurrentTasks || 0), 0) : null,
  };
}

async function taskCounts(api, page) {
  const totals = page.TotalCounts;
  if (totals) {
    return { running: (totals.Executing || 0) + (totals.Cancelling || 0), queued: totals.Queued || 0 };
  }
  const [running, queued] = await Promise.all([
    api.get("/api/tasks?take=1&states=Executing,Cancelling"), api.get("/api/tasks?take=1&states=Queued"),
  ]);
  return { running: running.TotalResults, queued: queued.TotalResults };
}

const SHORT = { HasWarnings: "warnings" };

function chip(href, count, label, tone, test) {
  return h("a", { class: `chip chip-${tone}${count ? "" : " chip-zero"}`, href, "data-test": test,
    title: `${count} ${label}` }, h("strong", { text: String(count) }), ` ${label}`);
}

/** Shows counts in holder: one chip per health status, then the tasks. */
export function renderCounts(holder, counts) {
  const tones = { Healthy: "good", HasWarnings: "warn", Unhealthy: "bad", Unavailable: "off", Unknown: "off" };
  const workers = HEALTH.filter((s) => counts.health[s] || s === "Healthy").map((s) =>
    chip(`#/workers?status=${s}`, counts.health[s], (SHORT[s] || s).toLowerCase(), tones[s], `count-${s}`));
  if (counts.disabled) {
    workers.push(chip("#/workers", counts.disabled, "disabled", "off", "count-disabled"));
  }
  const cap = counts.cap === null ? "" : ` of ${counts.cap}`;
  clear(holder).append(
    h("div", { class: "chips", "aria-label": "workers" }, h("span", { class: "chips-label", text: "Workers" }),
      workers),
    h("div", { class: "chips", "aria-label": "tasks" }, h("span", { class: "chips-label", text: "Tasks" }),
      h("a", { class: "chip chip-run", href: "#/tasks", "data-test": "count-running",
        title: counts.cap === null ? "tasks running" : `tasks running, of at most ${counts.cap} at once` },
        h("strong", { text: String(counts.running) }), ` running${cap}`),
      chip("#/tasks", counts.queued, "queued", "info", "count-queued")));
}
