// Worker pools (#/pools): the list with each pool's workers by health, and a
// form to create (#/pools/new) or edit (#/pools/WorkerPools-N) one.

import { empty, h, heading, statusBadge, table } from "./dom.js";
import { checkbox, editor, field, input, number, select, textarea, whole } from "./forms.js";

export const routes = [
  { pattern: /^#\/pools\/new$/, title: "New worker pool", render: (ctx) => renderEditor(ctx, null) },
  { pattern: /^#\/pools\/(WorkerPools-\d+)$/, title: "Edit worker pool", render: (ctx, m) => renderEditor(ctx, m[1]) },
  { pattern: /^#\/pools(\?.*)?$/, title: "Worker pools", render: renderList },
];

async function renderList(ctx) {
  const summary = await ctx.api.get("/api/workerpools/summary");
  const items = summary.WorkerPoolSummaries || [];
  const add = ctx.canChange
    ? h("a", { class: "button primary action", href: "#/pools/new", "data-test": "action-new-pool", text: "New pool" })
    : null;
  ctx.main.append(heading("Worker pools", add),
    items.length ? poolsTable(ctx, items) : empty("There is no worker pool yet."));
}

function poolsTable(ctx, items) {
  const columns = [
    { label: "Pool", class: "name-cell", cell: ({ WorkerPool: p }) => [
      h("a", { href: `#/workers?pool=${encodeURIComponent(p.Id)}`, "data-test": "pool-name" }, h("strong", { text: p.Name })),
      p.Description ? h("span", { class: "sub", text: p.Description }) : null] },
    { label: "Workers", cell: workersCell },
    { label: "Default", cell: ({ WorkerPool: p }) => (p.IsDefault ? h("span", { class: "tag", text: "default" }) : "—") },
    { label: "Sort order", cell: ({ WorkerPool: p }) => String(p.SortOrder) },
    { label: "Type", cell: ({ WorkerPool: p }) => (p.WorkerPoolType === "StaticWorkerPool" ? "Static" : p.WorkerPoolType) },
  ];
  if (ctx.canChange) {
    columns.push({ label: "Actions", class: "actions", cell: ({ WorkerPool: p }) =>
      h("a", { class: "button small action", href: `#/pools/${p.Id}`, "data-test": "action-edit", text: "Edit" }) });
  }
  return table(columns, items, ({ WorkerPool: p }) => ({ "data-test": "pool-row", "data-id": p.Id, "data-name": p.Name }));
}

function workersCell(item) {
  const counts = item.MachineHealthStatusSummaries || {};
  const parts = Object.entries(counts).filter(([, n]) => n).map(([status, n]) => {
    const badge = statusBadge(status);
    badge.textContent = `${n} ${badge.textContent.toLowerCase()}`;
    return [badge, " "];
  });
  const total = item.TotalMachines;
  return h("span", { class: "pool-workers" },
    h("span", { class: "pool-total", text: total ? `${total} worker${total === 1 ? "" : "s"} ` : "none yet" }),
    parts,
    item.TotalDisabledMachines ? h("span", { class: "sub", text: `${item.TotalDisabledMachines} disabled` }) : null);
}

async function renderEditor(ctx, id) {
  if (!ctx.canChange) {
    ctx.main.append(h("p", { class: "page-error", "data-test": "page-error",
      text: "This key is read only: it cannot create or change pools." }));
    return;
  }
  const pool = id ? await ctx.api.get(`/api/workerpools/${id}`)
    : { Name: "", Description: "", IsDefault: false, SortOrder: "", WorkerPoolType: "StaticWorkerPool" };
  const f = {
    name: input("Name", pool.Name, { required: true, autocomplete: "off" }),
    description: textarea("Description", pool.Description, { rows: 3, class: "" }),
    isDefault: checkbox("IsDefault", pool.IsDefault),
    sortOrder: number("SortOrder", pool.SortOrder, { placeholder: "after the others" }),
    type: select("WorkerPoolType", pool.WorkerPoolType, [["StaticWorkerPool", "Static (workers you register)"]]),
  };
  const save = async () => {
    const body = { ...pool, Name: f.name.value, Description: f.description.value, IsDefault: f.isDefault.checked,
      WorkerPoolType: f.type.value };
    const order = f.sortOrder.value.trim();
    if (order) body.SortOrder = whole(order);
    else delete body.SortOrder;
    const saved = id ? await ctx.api.put(`/api/workerpools/${id}`, body) : await ctx.api.post("/api/workerpools", body);
    ctx.notice(`Pool ${saved.Name} is ${id ? "saved" : "created"}.`, "ok");
    ctx.navigate("#/pools");
  };
  ctx.main.append(editor({
    title: id ? `Edit ${pool.Name}` : "New worker pool",
    intro: "A pool is a set of workers a task runs on. The default pool takes new workers "
      + "and tasks that name no pool.",
    fields: [
      field("Name", f.name, "", true),
      field("Description", f.description, "", true),
      field("Sort order", f.sortOrder, "Lower comes first in lists."),
      field("Type", f.type),
      field("The default pool", f.isDefault, "", true),
    ],
    save, cancelHref: "#/pools", submitText: id ? "Save pool" : "Create pool",
  }));
  f.name.focus();
}
