// Tasks: the list (#/tasks), a task's page with its live log (#/tasks/ServerTasks-N),
// the run-script form (#/run) and the queue the dashboard shows (renderQueue).
//
// Every text from the hub (a log line, a description, a variable) goes into the page as
// a text node (dom.js's h), never as HTML: a script's output is untrusted.

import { h, clear, when, statusBadge } from "./dom.js";

export const STATES = ["Queued", "Executing", "Cancelling", "Success", "Failed", "Canceled", "TimedOut"];
const QUEUE = ["Queued", "Executing", "Cancelling"];
const SYNTAXES = ["Bash", "Python", "sh"];
const PAGE = 30; // tasks in one page of the list
const POLL_MS = 1000; // between looks at a task when the hub has no stream
const RETRY_MS = [500, 1000, 2000, 5000]; // before reconnecting a dropped stream, growing
const LIST_REFRESH_MS = 5000; // the list and the queue look again while shown

// ---- styles of these views (a stylesheet of our own: the CSP allows no inline style)

function ensureStyles() {
  if (document.querySelector('link[data-tasks-css]')) return;
  document.head.append(h("link", { rel: "stylesheet", href: "tasks.css", "data-tasks-css": "" }));
}

// ---- small helpers

function taskLink(task) {
  return h("a", { href: `#/tasks/${task.Id}` }, task.Description || task.Id);
}

function timeCell(iso) {
  return iso ? when(iso) : "";
}

function field(label, ...value) {
  return h("div", { class: "task-field" }, h("dt", { text: label }), h("dd", {}, ...value));
}

function message(el, text, kind = "info") {
  clear(el);
  el.append(h("p", { class: `task-message ${kind}`, "data-test": "task-message", text }));
}

/** Sleep ``ms`` unless ``signal`` aborts first (a UI retry delay, never a test wait). */
function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Run ``fn`` every ``ms`` until the route changes. */
function every(ctx, ms, fn) {
  const timer = setInterval(fn, ms);
  ctx.onLeave(() => clearInterval(timer));
}

// ---- tasks table (the list and the queue)

function taskRow(task) {
  return h(
    "tr",
    { "data-test": "task-row", "data-task-id": task.Id, "data-state": task.State },
    h("td", {}, statusBadge(task.State)),
    h("td", { text: task.Name }),
    h("td", {}, taskLink(task)),
    h("td", { text: task.QueuedBy || "" }),
    h("td", {}, timeCell(task.QueueTime)),
    h("td", { text: task.Duration || "" }),
  );
}

function tasksTable(tasks) {
  const head = ["State", "Kind", "Description", "Queued by", "Queued", "Duration"];
  return h(
    "table",
    { class: "tasks-table" },
    h("thead", {}, h("tr", {}, ...head.map((text) => h("th", { text })))),
    h("tbody", {}, ...tasks.map(taskRow)),
  );
}

/** The queue (queued, executing and cancelling tasks, newest first) into ``el``: the
 * dashboard's part of the tasks, refreshed while the route is shown. */
export async function renderQueue(ctx, el) {
  ensureStyles();
  const draw = async () => {
    const page = await ctx.api.get(`/api/tasks?states=${QUEUE.join(",")}&take=${PAGE}`);
    clear(el);
    el.append(h("h2", { text: "Queue" }));
    if (page.Items.length === 0) {
      el.append(h("p", { class: "empty", "data-test": "queue-empty", text: "Nothing queued or running." }));
    } else {
      el.append(tasksTable(page.Items));
    }
  };
  await draw();
  every(ctx, LIST_REFRESH_MS, () => draw().catch(() => {}));
}

// ---- #/tasks

function stateFilter(onChange) {
  const options = [h("option", { value: "", text: "All states" })];
  for (const state of STATES) options.push(h("option", { value: state, "data-state": state, text: state }));
  const select = h("select", { "data-test": "state-filter", on: { change: () => onChange(select.value) } }, ...options);
  /** The options' labels with the hub's counts (TotalCounts), when it gives them. */
  const counts = (totals) => {
    if (!totals) return;
    for (const option of select.querySelectorAll("option[data-state]")) {
      const state = option.dataset.state;
      option.textContent = state in totals ? `${state} (${totals[state]})` : state;
    }
  };
  return { el: h("label", { class: "filter" }, "State ", select), counts };
}

async function renderList(ctx) {
  ensureStyles();
  const view = { state: "", skip: 0 };
  const header = h("div", { class: "tasks-header" }, h("h1", { text: "Tasks" }));
  if (ctx.canChange) {
    header.append(h("a", { href: "#/run", class: "button action", "data-test": "action-run", text: "Run a script" }));
  }
  const body = h("div", { class: "tasks-body" });
  const draw = async () => {
    const states = view.state ? `&states=${view.state}` : "";
    const page = await ctx.api.get(`/api/tasks?skip=${view.skip}&take=${PAGE}${states}`);
    filter.counts(page.TotalCounts);
    clear(body);
    if (page.Items.length === 0) {
      const text = view.state ? `No ${view.state} tasks.` : "No tasks yet.";
      body.append(h("p", { class: "empty", "data-test": "tasks-empty", text }));
      return;
    }
    body.append(tasksTable(page.Items), pager(page, view, draw));
  };
  const filter = stateFilter((state) => {
    view.state = state;
    view.skip = 0;
    draw().catch((error) => message(body, error.message, "error"));
  });
  ctx.main.append(header, h("div", { class: "tasks-controls" }, filter.el), body);
  await draw();
  every(ctx, LIST_REFRESH_MS, () => draw().catch(() => {}));
}

function pager(page, view, draw) {
  const last = page.LastPageNumber ?? 0;
  const number = Math.floor(view.skip / PAGE);
  const go = (delta) => () => {
    view.skip = Math.max(0, view.skip + delta * PAGE);
    draw().catch(() => {});
  };
  const previous = h("button", { type: "button", text: "Newer", on: { click: go(-1) } });
  const next = h("button", { type: "button", text: "Older", on: { click: go(1) } });
  previous.disabled = number === 0;
  next.disabled = number >= last;
  const shown = h("span", { text: `Page ${number + 1} of ${last + 1} (${page.TotalResults} tasks)` });
  return h("div", { class: "pager" }, previous, shown, next);
}

// ---- #/tasks/ServerTasks-N: reading the details, from the stream or by polling

/** Parse server-sent events from text chunks: ``push(chunk)`` calls
 * ``onEvent({event, id, data})`` for each complete event (a blank line ends one). */
export function sseParser(onEvent) {
  let buffer = "";
  let event = { event: "message", id: null, data: [] };
  const line = (text) => {
    if (text === "") {
      if (event.data.length) onEvent({ event: event.event, id: event.id, data: event.data.join("\n") });
      event = { event: "message", id: event.id, data: [] };
      return;
    }
    if (text.startsWith(":")) return; // a comment: keepalive
    const colon = text.indexOf(":");
    const name = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") event.event = value;
    else if (name === "id") event.id = value;
    else if (name === "data") event.data.push(value);
  };
  return (chunk) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      line(buffer.slice(0, end).replace(/\r$/, ""));
      buffer = buffer.slice(end + 1);
    }
  };
}

class NoStream extends Error {}

/** Read the task's stream from ``cursor.since`` until its ``end`` event (true) or a drop
 * (false); each details document to ``onDoc``. A hub without the stream: NoStream. */
async function readStream(ctx, id, cursor, onDoc, signal) {
  const url = `/api/tasks/${id}/details/stream?since=${cursor.since}`;
  const response = await fetch(url, { headers: { "X-Octopus-ApiKey": ctx.api.key, Accept: "text/event-stream" }, signal });
  if (response.status === 404 || response.status === 405) throw new NoStream();
  if (!response.ok || !response.body) return false;
  let ended = false;
  const push = sseParser((event) => {
    if (event.event === "end") { ended = true; return; }
    if (event.event !== "details") return;
    const doc = JSON.parse(event.data);
    cursor.since = doc.NextLogCursor ?? cursor.since;
    onDoc(doc);
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    while (!ended) {
      const { value, done } = await reader.read();
      if (done) break;
      push(decoder.decode(value, { stream: true }));
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return ended;
}

/** Look at the task's details from ``cursor.since`` until it is completed and its whole
 * log read (the way of a hub without the stream: the same documents). */
async function poll(ctx, id, cursor, onDoc, signal) {
  while (!signal.aborted) {
    const doc = await ctx.api.get(`/api/tasks/${id}/details?since=${cursor.since}`);
    if (signal.aborted) return;
    cursor.since = doc.NextLogCursor ?? cursor.since;
    onDoc(doc);
    if (doc.HasMoreLogs) continue;
    if (doc.Task.IsCompleted) return;
    await pause(POLL_MS, signal);
  }
}

/** Follow the task from ``cursor`` until it ends or the route changes: the stream,
 * reconnected with since= after a drop; polling if the hub has none. ``live(text)``
 * says how it goes. */
async function follow(ctx, id, cursor, onDoc, live) {
  const control = new AbortController();
  ctx.onLeave(() => control.abort());
  const signal = control.signal;
  let failures = 0;
  while (!signal.aborted) {
    try {
      live("live", "Live");
      if (await readStream(ctx, id, cursor, onDoc, signal)) break;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof NoStream) {
        await poll(ctx, id, cursor, onDoc, signal).catch(() => {});
        if (signal.aborted) return;
        // a poll that failed (the hub away) tries again, as a dropped stream does
        continue;
      }
    }
    if (signal.aborted) return;
    live("reconnecting", "Reconnecting…");
    await pause(RETRY_MS[Math.min(failures, RETRY_MS.length - 1)], signal);
    failures += 1;
  }
  if (!signal.aborted) live("ended", "Finished");
}

// ---- the task page's parts

/** A scrolling log: lines appended as text; it follows the end unless the person scrolled up. */
function logView(test = "log") {
  const el = h("div", { class: "log", "data-test": test, tabindex: "0" });
  const seen = new Set();
  const append = (elements) => {
    const fresh = elements.filter((element) => !seen.has(element.Id));
    if (fresh.length === 0) return;
    const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
    for (const element of fresh) {
      seen.add(element.Id);
      const category = (element.Category || "Info").toLowerCase();
      const time = element.OccurredAt ? new Date(element.OccurredAt).toLocaleTimeString() : "";
      el.append(h(
        "div",
        { class: `log-line ${category}`, "data-test": "log-line", "data-category": element.Category || "" },
        h("span", { class: "log-time", text: time }),
        h("span", { class: "log-text", text: element.MessageText ?? "" }),
      ));
    }
    if (atEnd) el.scrollTop = el.scrollHeight;
  };
  return { el, append };
}

function variablesTable(variables) {
  if (!variables || variables.length === 0) return h("p", { class: "empty", text: "No output variables." });
  return h(
    "table",
    { class: "variables", "data-test": "output-variables" },
    h("thead", {}, h("tr", {}, h("th", { text: "Output variable" }), h("th", { text: "Value" }))),
    h("tbody", {}, ...variables.map((variable) => h(
      "tr",
      { "data-test": "output-variable", "data-name": variable.Name },
      h("td", { text: variable.Name }),
      h("td", {}, h("code", { text: variable.Value ?? "" }), variable.IsSensitive ? h("span", { class: "sensitive", text: " sensitive" }) : ""),
    ))),
  );
}

/** One step's section: built once, its fields replaced and its log appended on each document. */
function stepView(child) {
  const title = h("h3", {});
  const facts = h("dl", { class: "step-facts" });
  const variables = h("div", { class: "step-variables" });
  const log = logView();
  const el = h("section", { class: "step", "data-test": "step", "data-step-id": child.Id }, title, facts, variables, log.el);
  const update = (step) => {
    clear(title);
    title.append(statusBadge(step.Status || "Pending"), " ", step.Name || step.Id);
    clear(facts);
    facts.append(field("Worker", step.Worker || "—"), field("Started", timeCell(step.Started)), field("Ended", timeCell(step.Ended)));
    if (step.ExitCode !== undefined && step.ExitCode !== null) facts.append(field("Exit code", String(step.ExitCode)));
    clear(variables);
    variables.append(variablesTable(step.OutputVariables));
    log.append(step.LogElements || []);
  };
  return { el, update };
}

function taskFacts(task) {
  const facts = [
    field("State", statusBadge(task.State)),
    field("Kind", task.Name),
    field("Queued", timeCell(task.QueueTime)),
    field("Queued by", task.QueuedBy || "—"),
    field("Started", timeCell(task.StartTime)),
    field("Completed", timeCell(task.CompletedTime)),
    field("Duration", task.Duration || "—"),
  ];
  return h("dl", { class: "task-facts", "data-test": "task-facts" }, ...facts);
}

function scriptOf(task) {
  const body = task.Arguments && task.Arguments.ScriptBody;
  if (typeof body !== "string") return "";
  const syntax = task.Arguments.Syntax || "Bash";
  return h("details", { class: "script" }, h("summary", { text: `Script (${syntax})` }), h("pre", { text: body }));
}

function actions(ctx, task, reload) {
  const el = h("div", { class: "task-actions" });
  if (!ctx.canChange) return el;
  if (!task.IsCompleted) {
    const cancel = h("button", { type: "button", class: "action danger", "data-test": "action-cancel", text: "Cancel" });
    cancel.disabled = task.State === "Cancelling";
    cancel.addEventListener("click", () => cancelTask(ctx, task, cancel, reload));
    el.append(cancel);
  }
  if (task.CanRerun) {
    const rerun = h("button", { type: "button", class: "action", "data-test": "action-rerun", text: "Run again" });
    rerun.addEventListener("click", () => rerunTask(ctx, task, rerun));
    el.append(rerun);
  }
  return el;
}

async function cancelTask(ctx, task, button, reload) {
  if (!window.confirm(`Cancel ${task.Id} (${task.Description})?`)) return;
  button.disabled = true;
  try {
    const after = await ctx.api.post(`/api/tasks/${task.Id}/cancel`);
    ctx.notice(after.Message || `${task.Id}: cancel requested`, "info");
    reload(after);
  } catch (error) {
    button.disabled = false;
    ctx.notice(`Could not cancel ${task.Id}: ${error.message}`, "error");
  }
}

async function rerunTask(ctx, task, button) {
  button.disabled = true;
  try {
    const again = await ctx.api.post(`/api/tasks/rerun/${task.Id}`);
    ctx.navigate(`#/tasks/${again.Id}`);
  } catch (error) {
    button.disabled = false;
    ctx.notice(`Could not run ${task.Id} again: ${error.message}`, "error");
  }
}

function download(ctx, artifact) {
  return async () => {
    try {
      const response = await fetch(artifact.Links.Content, { headers: { "X-Octopus-ApiKey": ctx.api.key } });
      if (!response.ok) throw new Error(`the hub answered ${response.status}`);
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: artifact.Filename, class: "hidden" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      ctx.notice(`Could not download ${artifact.Filename}: ${error.message}`, "error");
    }
  };
}

async function drawArtifacts(ctx, id, el) {
  const page = await ctx.api.get(`/api/artifacts?regarding=${id}&take=1000`);
  clear(el);
  el.append(h("h2", { text: "Artifacts" }));
  if (page.Items.length === 0) {
    el.append(h("p", { class: "empty", text: "No artifacts." }));
    return;
  }
  el.append(h("ul", { class: "artifacts" }, ...page.Items.map((artifact) => h(
    "li",
    { "data-test": "artifact" },
    h("button", { type: "button", class: "link", "data-test": "artifact-download", text: artifact.Filename, on: { click: download(ctx, artifact) } }),
    h("span", { class: "muted", text: ` from ${artifact.Source || "the hub"}${artifact.Length != null ? `, ${artifact.Length} bytes` : ""}` }),
  ))));
}

// ---- #/tasks/ServerTasks-N

const TASK_ID = /^ServerTasks-\d+$/;

async function firstDetails(ctx, id) {
  try {
    return await ctx.api.get(`/api/tasks/${id}/details?since=0`);
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

async function renderTask(ctx, match) {
  ensureStyles();
  const id = decodeURIComponent(match[1]);
  if (!TASK_ID.test(id)) {
    message(ctx.main, `"${id}" is not a task id: a task's id looks like ServerTasks-12.`, "error");
    return;
  }
  const doc = await firstDetails(ctx, id);
  if (doc === null) {
    message(ctx.main, `There is no task ${id} on this hub (it may have been another hub's, or removed).`, "error");
    ctx.main.append(h("p", {}, h("a", { href: "#/tasks", text: "All tasks" })));
    return;
  }
  const page = taskPage(ctx, id);
  page.merge(doc);
  const cursor = { since: doc.NextLogCursor ?? 0 };
  if (doc.HasMoreLogs || !doc.Task.IsCompleted) {
    follow(ctx, id, cursor, page.merge, page.live);
  } else {
    page.live("ended", "Finished");
  }
}

/** The task page's elements and ``merge(doc)``: a details document into them (steps by
 * Id, fields replaced, log lines appended). */
function taskPage(ctx, id) {
  const title = h("h1", { "data-test": "task-title" });
  const liveBadge = h("span", { class: "live-status", "data-test": "live-status" });
  const summary = h("div", { class: "task-summary" });
  const error = h("div", { class: "task-error", "data-test": "task-error" });
  const actionsEl = h("div", {});
  const script = h("div", {});
  const taskLog = logView("task-log");
  const steps = h("div", { class: "steps" });
  const artifacts = h("section", { class: "artifacts-section", "data-test": "artifacts" });
  ctx.main.append(
    h("div", { class: "tasks-header" }, title, liveBadge),
    actionsEl, summary, error, script,
    h("section", { class: "task-log-section" }, h("h2", { text: "Task log" }), taskLog.el),
    h("h2", { text: "Steps" }), steps, artifacts,
  );
  const views = new Map();
  let last = null;
  let drewArtifacts = null;
  const drawTask = (task) => {
    const changed = !last || last.State !== task.State || last.CanRerun !== task.CanRerun;
    last = task;
    clear(title);
    title.append(task.Description || task.Id, " ", h("span", { class: "muted", text: task.Id }));
    clear(summary);
    summary.append(taskFacts(task));
    clear(error);
    if (task.ErrorMessage) error.append(h("p", { class: "task-message error", text: task.ErrorMessage }));
    if (changed) {
      clear(actionsEl);
      actionsEl.append(actions(ctx, task, drawTask));
    }
    if (script.childNodes.length === 0) script.append(scriptOf(task));
    const ended = task.IsCompleted ? "done" : "running";
    if (drewArtifacts !== ended) {
      drewArtifacts = ended;
      drawArtifacts(ctx, id, artifacts).catch((e) => message(artifacts, `Artifacts: ${e.message}`, "error"));
    }
  };
  const merge = (doc) => {
    drawTask(doc.Task);
    const root = (doc.ActivityLogs || [])[0];
    if (!root) return;
    taskLog.append(root.LogElements || []);
    for (const child of root.Children || []) {
      let view = views.get(child.Id);
      if (!view) {
        view = stepView(child);
        views.set(child.Id, view);
        steps.append(view.el);
      }
      view.update(child);
    }
    if (views.size === 0 && steps.childNodes.length === 0) {
      steps.append(h("p", { class: "empty", "data-test": "no-steps", text: "No steps yet." }));
    } else if (views.size > 0) {
      for (const node of [...steps.querySelectorAll('[data-test="no-steps"]')]) node.remove();
    }
  };
  const live = (state, text) => {
    liveBadge.dataset.state = state;
    liveBadge.textContent = text;
  };
  return { merge, live };
}

// ---- #/run

function choice(name, values, test) {
  return h("select", { name, "data-test": test }, ...values.map(([value, text]) => h("option", { value, text })));
}

async function renderRun(ctx) {
  ensureStyles();
  ctx.main.append(h("h1", { text: "Run a script" }));
  if (!ctx.canChange) {
    message(ctx.main, "Your API key can read but not run scripts (ask for a key with ConfigureServer).", "info");
    return;
  }
  const pools = await ctx.api.get("/api/workerpools/all");
  const workers = await ctx.api.get("/api/workers/all");
  if (pools.length === 0) {
    message(ctx.main, "There is no worker pool yet: create one on the Pools page first.", "info");
    return;
  }
  const form = runForm(ctx, pools, workers);
  ctx.main.append(form);
}

function runForm(ctx, pools, workers) {
  const def = pools.find((pool) => pool.IsDefault) || pools[0];
  const pool = choice("pool", pools.map((p) => [p.Id, p.Name]), "run-pool");
  pool.value = def.Id;
  const chosen = h("fieldset", { class: "run-workers", "data-test": "run-workers" });
  const drawWorkers = () => {
    clear(chosen);
    chosen.append(h("legend", { text: "Workers (none chosen: one worker of the pool; or every worker)" }));
    const members = workers.filter((w) => (w.WorkerPoolIds || []).includes(pool.value));
    if (members.length === 0) chosen.append(h("p", { class: "empty", text: "This pool has no workers." }));
    for (const worker of members) {
      const box = h("input", { type: "checkbox", name: "worker", value: worker.Id, "data-test": "run-worker" });
      chosen.append(h("label", { class: "check" }, box, ` ${worker.Name} `, statusBadge(worker.HealthStatus || "Unknown")));
    }
  };
  pool.addEventListener("change", drawWorkers);
  drawWorkers();
  const all = h("input", { type: "checkbox", name: "all", "data-test": "run-all" });
  const syntax = choice("syntax", SYNTAXES.map((s) => [s, s]), "run-syntax");
  const body = h("textarea", { name: "body", rows: "12", spellcheck: "false", "data-test": "run-body", placeholder: "echo hello" });
  const parallelism = h("input", { type: "number", name: "parallelism", min: "1", step: "1", "data-test": "run-parallelism", placeholder: "no limit" });
  const errors = h("div", { class: "run-errors", "data-test": "run-errors", role: "alert" });
  const submit = h("button", { type: "submit", class: "action primary", "data-test": "run-submit", text: "Run" });
  const form = h(
    "form",
    { class: "run-form", novalidate: "" },
    h("div", { class: "run-fields" },
      h("label", {}, "Worker pool ", pool),
      chosen,
      h("label", { class: "check" }, all, " Run on every worker of the pool"),
      h("label", {}, "Syntax ", syntax),
      h("label", { class: "wide" }, "Script ", body),
      h("label", {}, "At most this many workers at once ", parallelism),
      h("div", {}, submit)),
    errors,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const fields = { pool, chosen, all, syntax, body, parallelism };
    runScript(ctx, fields, errors, submit);
  });
  return form;
}

function runArguments(fields) {
  const args = { WorkerpoolId: fields.pool.value, Syntax: fields.syntax.value, ScriptBody: fields.body.value };
  const machines = [...fields.chosen.querySelectorAll('input[name="worker"]:checked')].map((box) => box.value);
  if (machines.length) args.MachineIds = machines;
  if (fields.all.checked) args.TargetAllWorkers = true;
  const limit = fields.parallelism.value.trim();
  // sent as typed when it is not a whole number: the hub's message names what it expects
  if (limit !== "") args.MaxParallelism = /^\d+$/.test(limit) ? Number(limit) : limit;
  return args;
}

async function runScript(ctx, fields, errors, submit) {
  clear(errors);
  submit.disabled = true;
  try {
    const task = await ctx.api.post("/api/tasks", { Name: "AdHocScript", Arguments: runArguments(fields) });
    ctx.navigate(`#/tasks/${task.Id}`);
  } catch (error) {
    showErrors(errors, error);
  } finally {
    submit.disabled = false;
  }
}

function showErrors(el, error) {
  clear(el);
  const list = Array.isArray(error.errors) && error.errors.length ? error.errors : null;
  el.append(h("p", { class: "task-message error", "data-test": "run-error", text: list ? error.errorMessage || "The hub refused the script:" : error.message }));
  if (list) el.append(h("ul", {}, ...list.map((text) => h("li", { "data-test": "run-error-item", text }))));
}

export const routes = [
  { pattern: /^#\/tasks\/?$/, title: "Tasks", render: renderList },
  { pattern: /^#\/tasks\/([^/?#]+)$/, title: "Task", render: renderTask },
  { pattern: /^#\/run\/?$/, title: "Run a script", render: renderRun },
];
