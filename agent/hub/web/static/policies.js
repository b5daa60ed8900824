// Machine policies (#/policies): how often workers are checked and how, what
// happens to unreachable ones; the list, and a form to create (#/policies/new,
// from the hub's template) or edit (#/policies/MachinePolicies-N) one.

import { empty, h, heading, table } from "./dom.js";
import { editor, field, input, number, select, textarea, whole } from "./forms.js";

export const routes = [
  { pattern: /^#\/policies\/new$/, title: "New machine policy", render: (ctx) => renderEditor(ctx, null) },
  { pattern: /^#\/policies\/(MachinePolicies-\d+)$/, title: "Edit machine policy",
    render: (ctx, m) => renderEditor(ctx, m[1]) },
  { pattern: /^#\/policies(\?.*)?$/, title: "Machine policies", render: renderList },
];

const CHECK_TYPES = [["RunScript", "Run the health script"], ["OnlyConnectivity", "Only check it answers"]];
const CONNECTIVITY = [["ExpectedToBeOnline", "Expected to be online (unreachable = unhealthy)"],
  ["MayBeOfflineAndCanBeSkipped", "May be offline (skipped when unreachable)"]];
const CLEANUP = [["DoNotDelete", "Keep them"], ["DeleteUnavailableMachines", "Delete them after a while"]];
const WORDS = Object.fromEntries([...CHECK_TYPES, ...CONNECTIVITY, ...CLEANUP]);

/** "1.02:03:00" → "1 day 2 hours 3 minutes"; the text itself if it is not a span. */
export function span(text) {
  const match = /^(?:(\d+)\.)?(\d+):(\d+):(\d+)(?:\.\d+)?$/.exec(String(text || ""));
  if (!match) return String(text ?? "—");
  const [, d, hh, mm, ss] = match.map((v) => Number(v || 0));
  const parts = [[d, "day"], [hh, "hour"], [mm, "minute"], [ss, "second"]]
    .filter(([n]) => n).map(([n, unit]) => `${n} ${unit}${n === 1 ? "" : "s"}`);
  return parts.length ? parts.join(" ") : "0 seconds";
}

async function renderList(ctx) {
  const policies = await ctx.api.get("/api/machinepolicies/all");
  const add = ctx.canChange
    ? h("a", { class: "button primary action", href: "#/policies/new", "data-test": "action-new-policy",
      text: "New policy" })
    : null;
  ctx.main.append(heading("Machine policies", add),
    policies.length ? policiesTable(ctx, policies) : empty("There is no machine policy yet."));
}

function policiesTable(ctx, policies) {
  const columns = [
    { label: "Policy", class: "name-cell", cell: (p) => [h("strong", { "data-test": "policy-name", text: p.Name }),
      p.IsDefault ? [" ", h("span", { class: "tag", text: "default" })] : null,
      p.Description ? h("span", { class: "sub", text: p.Description }) : null] },
    { label: "Health check", cell: (p) => {
      const health = p.MachineHealthCheckPolicy;
      return [`every ${span(health.HealthCheckInterval)}`,
        h("span", { class: "sub", text: WORDS[health.HealthCheckType] || health.HealthCheckType })];
    } },
    { label: "When unreachable", cell: (p) => {
      const behavior = p.MachineConnectivityPolicy.MachineConnectivityBehavior;
      return WORDS[behavior] || behavior;
    } },
    { label: "Unavailable workers", cell: (p) => {
      const cleanup = p.MachineCleanupPolicy;
      return cleanup.DeleteMachinesBehavior === "DeleteUnavailableMachines"
        ? `deleted after ${span(cleanup.DeleteMachinesElapsedTimeSpan)}` : "kept";
    } },
    { label: "Disk warning", cell: (p) => `below ${p.FreeDiskSpaceWarningMegabytes} MB` },
  ];
  if (ctx.canChange) {
    columns.push({ label: "Actions", class: "actions", cell: (p) =>
      h("a", { class: "button small action", href: `#/policies/${p.Id}`, "data-test": "action-edit", text: "Edit" }) });
  }
  return table(columns, policies, (p) => ({ "data-test": "policy-row", "data-id": p.Id, "data-name": p.Name }));
}

function policyFields(p) {
  const health = p.MachineHealthCheckPolicy;
  const cleanup = p.MachineCleanupPolicy;
  return {
    name: input("Name", p.Name, { required: true, autocomplete: "off" }),
    description: input("Description", p.Description),
    interval: input("HealthCheckInterval", health.HealthCheckInterval, { class: "mono" }),
    checkType: select("HealthCheckType", health.HealthCheckType, CHECK_TYPES),
    script: textarea("ScriptBody", health.BashHealthCheckPolicy?.ScriptBody, { rows: 4 }),
    connectivity: select("MachineConnectivityBehavior", p.MachineConnectivityPolicy.MachineConnectivityBehavior, CONNECTIVITY),
    cleanup: select("DeleteMachinesBehavior", cleanup.DeleteMachinesBehavior, CLEANUP),
    cleanupAfter: input("DeleteMachinesElapsedTimeSpan", cleanup.DeleteMachinesElapsedTimeSpan, { class: "mono" }),
    disk: number("FreeDiskSpaceWarningMegabytes", p.FreeDiskSpaceWarningMegabytes),
    connect: input("ConnectionConnectTimeout", p.ConnectionConnectTimeout, { class: "mono" }),
    retries: number("ConnectionRetryCountLimit", p.ConnectionRetryCountLimit),
    retryTime: input("ConnectionRetryTimeLimit", p.ConnectionRetryTimeLimit, { class: "mono" }),
  };
}

/** The policy document with the form's values put in (the rest kept as it was). */
function fromForm(p, f) {
  return {
    ...p,
    Name: f.name.value,
    Description: f.description.value,
    MachineHealthCheckPolicy: {
      ...p.MachineHealthCheckPolicy,
      HealthCheckInterval: f.interval.value.trim(),
      HealthCheckType: f.checkType.value,
      BashHealthCheckPolicy: { ...p.MachineHealthCheckPolicy.BashHealthCheckPolicy, ScriptBody: f.script.value },
    },
    MachineConnectivityPolicy: { ...p.MachineConnectivityPolicy, MachineConnectivityBehavior: f.connectivity.value },
    MachineCleanupPolicy: { ...p.MachineCleanupPolicy, DeleteMachinesBehavior: f.cleanup.value,
      DeleteMachinesElapsedTimeSpan: f.cleanupAfter.value.trim() },
    FreeDiskSpaceWarningMegabytes: whole(f.disk.value),
    ConnectionConnectTimeout: f.connect.value.trim(),
    ConnectionRetryCountLimit: whole(f.retries.value),
    ConnectionRetryTimeLimit: f.retryTime.value.trim(),
  };
}

const SPAN_HINT = "A time span: hh:mm:ss, or d.hh:mm:ss for days.";

async function renderEditor(ctx, id) {
  if (!ctx.canChange) {
    ctx.main.append(h("p", { class: "page-error", "data-test": "page-error",
      text: "This key is read only: it cannot create or change machine policies." }));
    return;
  }
  const policy = await ctx.api.get(id ? `/api/machinepolicies/${id}` : "/api/machinepolicies/template");
  const f = policyFields(policy);
  const save = async () => {
    const body = fromForm(policy, f);
    const saved = id ? await ctx.api.put(`/api/machinepolicies/${id}`, body)
      : await ctx.api.post("/api/machinepolicies", body);
    ctx.notice(`Policy ${saved.Name} is ${id ? "saved" : "created"}.`, "ok");
    ctx.navigate("#/policies");
  };
  const group = (legend, ...fields) => h("fieldset", { class: "wide" }, h("legend", { text: legend }),
    h("div", { class: "form-grid" }, fields));
  ctx.main.append(editor({
    title: id ? `Edit ${policy.Name}` : "New machine policy",
    intro: "A machine policy says how often the hub checks its workers' health and how, what an "
      + "unreachable worker means, and when a long-unavailable one is deleted.",
    fields: [
      field("Name", f.name, "", true),
      field("Description", f.description, "", true),
      group("Health checks",
        field("Every", f.interval, `${SPAN_HINT} At least a minute.`),
        field("How", f.checkType),
        field("Health script (bash)", f.script, "Its output is the worker's status message; exit 0 healthy.", true),
        field("Warn when free disk is below (MB)", f.disk)),
      group("Connectivity",
        field("When a worker cannot be reached", f.connectivity, "", true),
        field("Connect timeout", f.connect, SPAN_HINT),
        field("Retries", f.retries),
        field("Retry for at most", f.retryTime, SPAN_HINT)),
      group("Clean-up",
        field("Workers that stay unavailable", f.cleanup),
        field("Delete after", f.cleanupAfter, SPAN_HINT)),
    ],
    save, cancelHref: "#/policies", submitText: id ? "Save policy" : "Create policy",
  }));
  f.name.focus();
}
