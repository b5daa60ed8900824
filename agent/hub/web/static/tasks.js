// Tasks: the list (#/tasks), a task's page with its live log (#/tasks/ServerTasks-N)
// and the run-script form (#/run). The dashboard shows the queue itself.
//
// Every text from the hub (a log line, a description, a variable) goes into the page as
// a text node (dom.js's h), never as HTML: a script's output is untrusted.

import {
  clear, confirmDialog, decoded, empty, h, hashQuery, hashWith, heading, pageError, statusBadge, table, when, withoutAnsi,
} from "./dom.js";

export const STATES = ["Queued", "Executing", "Cancelling", "Success", "Failed", "Canceled", "TimedOut"];
const SYNTAXES = ["Bash", "Python", "sh"];
const PAGE = 30; // tasks in one page of the list
const POLL_MS = 1000; // between looks at a task when the hub has no stream
const RETRY_MS = [500, 1000, 2000, 5000]; // before reconnecting a dropped stream, growing
const LIST_REFRESH_MS = 5000; // the list looks again while shown
const TASK_ID = /^ServerTasks-\d+$/;

// ---- small helpers

function taskLink(task) {
  return h("a", { href: `#/tasks/${task.Id}`, text: task.Description || task.Id });
}

function fact(label, ...value) {
  return h("div", { class: "fact" }, h("dt", { text: label }), h("dd", {}, ...value));
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

// ---- #/tasks (?state=Failed&skip=30)

function tasksTable(tasks) {
  return table([
    { label: "State", cell: (t) => statusBadge(t.State) },
    { label: "Task", class: "name-cell",
      cell: (t) => [h("strong", {}, taskLink(t)), h("div", { class: "sub", text: `${t.Name} · ${t.Id}` })] },
    { label: "Queued by", cell: (t) => t.QueuedBy || "—" },
    { label: "Queued", cell: (t) => when(t.QueueTime) },
    { label: "Duration", cell: (t) => t.Duration || "—" },
  ], tasks, (t) => ({ "data-test": "task-row", "data-id": t.Id, "data-state": t.State }));
}

/** The state filter; ``counts(totals)`` labels its options with the hub's TotalCounts. */
function stateFilter(ctx, chosen) {
  const select = h("select", { id: "task-state", "data-test": "state-filter" },
    h("option", { value: "", text: "All states" }),
    STATES.map((state) => h("option", { value: state, "data-state": state, text: state, selected: state === chosen })));
  select.addEventListener("change", () => ctx.navigate(hashWith("#/tasks", { state: select.value })));
  const counts = (totals) => {
    for (const option of select.querySelectorAll("option[data-state]")) {
      const state = option.dataset.state;
      option.textContent = totals && state in totals ? `${state} (${totals[state]})` : state;
    }
  };
  const el = h("div", { class: "filters" },
    h("div", { class: "filter" }, h("label", { for: "task-state", text: "State" }), select));
  return { el, counts };
}

function pager(ctx, page, params) {
  const last = page.LastPageNumber ?? 0;
  const number = Math.floor(params.skip / PAGE);
  const go = (to) => () => ctx.navigate(hashWith("#/tasks", { state: params.state, skip: to ? String(to * PAGE) : "" }));
  const newer = h("button", { type: "button", class: "button small", text: "Newer", disabled: number === 0, on: { click: go(number - 1) } });
  const older = h("button", { type: "button", class: "button small", text: "Older", disabled: number >= last, on: { click: go(number + 1) } });
  const shown = h("span", { class: "muted", text: `Page ${number + 1} of ${last + 1} · ${page.TotalResults} tasks` });
  return h("div", { class: "pager" }, newer, shown, older);
}

async function renderList(ctx) {
  const query = hashQuery();
  const state = STATES.includes(query.get("state")) ? query.get("state") : "";
  const skip = Math.max(0, Number.parseInt(query.get("skip") || "0", 10) || 0);
  const run = ctx.canChange
    && h("a", { href: "#/run", class: "button primary action", "data-test": "action-run", text: "Run a script" });
  const filter = stateFilter(ctx, state);
  const body = h("div", {});
  ctx.main.append(heading("Tasks", run), filter.el, body);
  const draw = async () => {
    const states = state ? `&states=${state}` : "";
    const page = await ctx.api.get(`/api/tasks?skip=${skip}&take=${PAGE}${states}`);
    filter.counts(page.TotalCounts);
    clear(body);
    if (page.Items.length === 0) {
      body.append(empty(state ? `No task is ${state}.` : "No task has run yet."));
      return;
    }
    body.append(tasksTable(page.Items), pager(ctx, page, { state, skip }));
  };
  await draw();
  every(ctx, LIST_REFRESH_MS, () => draw().catch(() => {}));
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
class Refused extends Error {}

// the hub's comment line every this many seconds of quiet, unless its answer says
// otherwise (X-Keepalive-Seconds); nothing for twice as long (and a little more, for
// a loaded hub or a slow network): the connection froze
const KEEPALIVE_S = 15;
const SLACK_MS = 2000;
const KEEPALIVE_HEADER = "X-Keepalive-Seconds";

/** The seconds between the hub's keepalives, from its answer's header (a default
 * for a hub that does not say, or says nonsense). */
function keepaliveOf(response) {
  const said = Number.parseFloat(response.headers.get(KEEPALIVE_HEADER) || "");
  return Number.isFinite(said) && said > 0 ? said : KEEPALIVE_S;
}

/** An AbortController that also aborts with ``outer``, and a watchdog on it:
 * ``arm(ms)`` aborts it unless ``arm`` is called again within ``ms``; ``quiet``
 * says whether the watchdog (not ``outer``) aborted it. */
function watched(outer) {
  const control = new AbortController();
  const stop = () => control.abort();
  outer.addEventListener("abort", stop, { once: true });
  let timer = null;
  const state = { quiet: false };
  const arm = (ms) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.quiet = true; control.abort(); }, ms);
  };
  const done = () => { clearTimeout(timer); outer.removeEventListener("abort", stop); };
  return { signal: control.signal, arm, done, state };
}

/** Read the task's stream from ``cursor.since`` until its ``end`` event (true), a drop
 * (false) or a freeze (null); ``opened()`` once it answers, each details document to ``onDoc``. A hub
 * without the stream: NoStream; a key refused (401, 403): Refused. Nothing heard for
 * twice the hub's keepalive (a frozen connection, no reset ever coming) is a drop. */
async function readStream(ctx, id, cursor, onDoc, outer, opened) {
  const url = `/api/tasks/${id}/details/stream?since=${cursor.since}`;
  const dog = watched(outer);
  // until the hub answers: what its last answer said (a reconnect after a freeze may
  // go out on another frozen connection of the browser's pool)
  dog.arm(2 * (cursor.keepalive || KEEPALIVE_S) * 1000 + SLACK_MS);
  try {
    return await readEvents(ctx, url, cursor, onDoc, dog, opened);
  } catch (error) {
    if (dog.state.quiet && !outer.aborted) return null; // froze: asked again from the cursor
    throw error;
  } finally {
    dog.done();
  }
}

async function readEvents(ctx, url, cursor, onDoc, dog, opened) {
  const response = await fetch(url, { headers: { "X-Octopus-ApiKey": ctx.api.key, Accept: "text/event-stream" },
    signal: dog.signal });
  if (response.status === 404 || response.status === 405) throw new NoStream();
  if (response.status === 401 || response.status === 403) throw new Refused(`the hub refused the key (HTTP ${response.status})`);
  if (!response.ok || !response.body) return false;
  cursor.keepalive = keepaliveOf(response);
  const bound = 2 * cursor.keepalive * 1000 + SLACK_MS;
  dog.arm(bound);
  opened();
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
      dog.arm(bound); // an event or a keepalive: the connection lives
      push(decoder.decode(value, { stream: true }));
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return ended;
}

/** Look at the task's details from ``cursor.since`` until it is completed and its whole
 * log read (true), or the route changes (false): the way of a hub without the stream
 * (the same documents). */
async function poll(ctx, id, cursor, onDoc, signal) {
  while (!signal.aborted) {
    const doc = await ctx.api.get(`/api/tasks/${id}/details?since=${cursor.since}`);
    if (signal.aborted) return false;
    cursor.since = doc.NextLogCursor ?? cursor.since;
    onDoc(doc);
    if (doc.HasMoreLogs) continue;
    if (doc.Task.IsCompleted) return true;
    await pause(POLL_MS, signal);
  }
  return false;
}

/** Follow the task from ``cursor`` until it ends or the route changes: the stream,
 * reconnected with since= after a drop; polling if the hub has none. ``live(state,
 * text)`` says how it goes (live, reconnecting, ended). */
async function follow(ctx, id, cursor, onDoc, live) {
  const control = new AbortController();
  ctx.onLeave(() => control.abort());
  const signal = control.signal;
  let failures = 0;
  const got = (doc) => { failures = 0; onDoc(doc); };
  while (!signal.aborted) {
    try {
      const read = await readStream(ctx, id, cursor, got, signal, () => live("live", "Live"));
      if (read === true) break;
      // a frozen connection is no sign of a hub in trouble: ask again soon (the next
      // try may meet another frozen connection the browser kept for reuse)
      if (read === null) failures = 0;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof Refused) {
        live("ended", `Not following: ${error.message}`);
        return;
      }
      // a hub without the stream is polled; a poll that failed (the hub away) is
      // tried again after a pause, as a dropped stream is
      if (error instanceof NoStream) {
        live("live", "Live (polling)");
        if (await poll(ctx, id, cursor, got, signal).catch(() => false)) break;
      }
    }
    if (signal.aborted) return;
    live("reconnecting", "Reconnecting…");
    await pause(RETRY_MS[Math.min(failures, RETRY_MS.length - 1)], signal);
    failures += 1;
  }
  if (!signal.aborted) live("ended", "");
}

// ---- the task page's parts

/** A scrolling log of lines (text nodes); it follows the end unless the person
 * scrolled up. ``append(elements)`` skips elements it has shown (by Id). */
function logView(test = "log") {
  const el = h("div", { class: "log", "data-test": test, tabindex: "0", role: "log" });
  const seen = new Set();
  const append = (elements) => {
    const fresh = elements.filter((element) => !seen.has(element.Id));
    if (fresh.length === 0) return;
    const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
    for (const element of fresh) {
      seen.add(element.Id);
      const category = String(element.Category || "Info").toLowerCase();
      const time = element.OccurredAt ? new Date(element.OccurredAt).toLocaleTimeString() : "";
      el.append(h("div", { class: `log-line log-${category}`, "data-test": "log-line", "data-category": element.Category },
        h("span", { class: "log-time", text: time }),
        h("span", { class: "log-text", text: withoutAnsi(element.MessageText ?? "") })));
    }
    if (atEnd) el.scrollTop = el.scrollHeight;
  };
  return { el, append };
}

function variablesTable(variables) {
  if (!variables || variables.length === 0) return null;
  return h("table", { class: "variables", "data-test": "output-variables" },
    h("thead", {}, h("tr", {}, h("th", { text: "Output variable" }), h("th", { text: "Value" }))),
    h("tbody", {}, variables.map((variable) => h("tr", { "data-test": "output-variable", "data-name": variable.Name },
      h("td", {}, h("code", { text: variable.Name })),
      h("td", {}, h("code", { text: variable.Value ?? "" }),
        variable.IsSensitive && h("span", { class: "tag", text: "sensitive" }))))));
}

/** One step's section, built once: ``update(child)`` replaces its fields and appends its log. */
function stepView(child) {
  const title = h("div", { class: "step-head" });
  const facts = h("dl", { class: "facts" });
  const variables = h("div", {});
  const log = logView();
  const el = h("section", { class: "card step", "data-test": "step", "data-step-id": child.Id },
    title, facts, variables, log.el);
  const update = (step) => {
    clear(title).append(h("h3", { text: step.Name || step.Id }), statusBadge(step.Status || "Pending"));
    clear(facts).append(fact("Worker", step.Worker || "—"),
      fact("Started", step.Started ? when(step.Started) : "not yet"),
      fact("Ended", step.Ended ? when(step.Ended) : "not yet"));
    if (step.ExitCode !== undefined && step.ExitCode !== null) facts.append(fact("Exit code", String(step.ExitCode)));
    clear(variables).append(variablesTable(step.OutputVariables) || "");
    log.append(step.LogElements || []);
  };
  return { el, update };
}

function taskFacts(task) {
  return h("dl", { class: "facts", "data-test": "task-facts" },
    fact("State", statusBadge(task.State)),
    fact("Task", h("code", { text: task.Id }), " ", task.Name),
    fact("Queued by", task.QueuedBy || "—"),
    fact("Queued", when(task.QueueTime)),
    fact("Started", task.StartTime ? when(task.StartTime) : "not yet"),
    fact("Completed", task.CompletedTime ? when(task.CompletedTime) : "not yet"),
    fact("Duration", task.Duration || "—"));
}

function scriptOf(task) {
  const body = task.Arguments && task.Arguments.ScriptBody;
  if (typeof body !== "string") return null;
  return h("details", { class: "script" }, h("summary", { text: `Script (${task.Arguments.Syntax || "Bash"})` }),
    h("pre", { text: body }));
}

function taskButtons(ctx, task, redraw) {
  if (!ctx.canChange) return [];
  const buttons = [];
  if (!task.IsCompleted) {
    buttons.push(h("button", { type: "button", class: "button danger action", "data-test": "action-cancel",
      text: task.State === "Cancelling" ? "Cancelling…" : "Cancel", disabled: task.State === "Cancelling",
      on: { click: (event) => cancelTask(ctx, task, event.currentTarget, redraw) } }));
  }
  if (task.CanRerun) {
    buttons.push(h("button", { type: "button", class: "button action", "data-test": "action-rerun", text: "Run again",
      on: { click: (event) => rerunTask(ctx, task, event.currentTarget) } }));
  }
  return buttons;
}

async function cancelTask(ctx, task, button, redraw) {
  const sure = await confirmDialog({ title: `Cancel ${task.Id}?`, confirm: "Cancel the task",
    text: `${task.Description}: its running scripts are stopped; queued steps do not start.` });
  if (!sure) return;
  button.disabled = true;
  try {
    const after = await ctx.api.post(`/api/tasks/${task.Id}/cancel`);
    ctx.notice(after.Message || `${task.Id}: cancel requested`, "ok");
    redraw(after);
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

/** Fetch an artifact with the key (a plain link cannot send it) and save it from a Blob URL. */
function download(ctx, artifact) {
  return async () => {
    try {
      const response = await fetch(artifact.Links.Content, { headers: { "X-Octopus-ApiKey": ctx.api.key } });
      if (!response.ok) throw new Error(`the hub answered HTTP ${response.status}`);
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: artifact.Filename, hidden: true });
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
  if (page.Items.length === 0) return;
  el.append(h("h2", { text: "Artifacts" }), h("ul", { class: "artifacts" }, page.Items.map((artifact) =>
    h("li", { "data-test": "artifact" },
      h("button", { type: "button", class: "button small", "data-test": "artifact-download",
        text: artifact.Filename, on: { click: download(ctx, artifact) } }),
      h("span", { class: "muted",
        text: ` from ${artifact.Source || "the hub"}${artifact.Length != null ? ` · ${artifact.Length} bytes` : ""}` })))));
}

// ---- #/tasks/ServerTasks-N

async function firstDetails(ctx, id) {
  try {
    return await ctx.api.get(`/api/tasks/${id}/details?since=0`);
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

async function renderTask(ctx, match) {
  const id = decoded(match[1]);
  if (!TASK_ID.test(id)) {
    ctx.main.append(heading("Task"), pageError(`"${id}" is not a task id: a task's id looks like ServerTasks-12.`));
    return;
  }
  const doc = await firstDetails(ctx, id);
  if (doc === null) {
    ctx.main.append(heading(id), pageError(`There is no task ${id} on this hub.`),
      h("p", {}, h("a", { href: "#/tasks", text: "See all tasks" })));
    return;
  }
  const page = taskPage(ctx, id);
  page.merge(doc);
  if (doc.HasMoreLogs || !doc.Task.IsCompleted) follow(ctx, id, { since: doc.NextLogCursor ?? 0 }, page.merge, page.live);
  else page.live("ended", "");
}

/** The task page's elements and ``merge(doc)``: a details document into them (the task's
 * fields replaced, steps by Id, log lines appended); ``live(state, text)`` the follow's state. */
function taskPage(ctx, id) {
  const liveBadge = h("span", { class: "live", "data-test": "live-status" });
  const head = h("div", {});
  const summary = h("div", { class: "card" });
  const script = h("div", {});
  const taskLog = logView("task-log");
  const logSection = h("section", { class: "section", hidden: true }, h("h2", { text: "Task log" }), taskLog.el);
  const steps = h("div", { class: "steps" }, empty("No step has started yet."));
  const artifacts = h("section", { class: "section", "data-test": "artifacts" });
  ctx.main.append(head, summary, script, logSection,
    h("section", { class: "section" }, h("h2", { text: "Steps" }), steps), artifacts);
  const views = new Map();
  let artifactsFor = null;
  const drawTask = (task) => {
    clear(head).append(heading(task.Description || task.Id, liveBadge, ...taskButtons(ctx, task, drawTask)));
    clear(summary).append(taskFacts(task));
    if (task.ErrorMessage) summary.append(h("p", { class: "form-error", "data-test": "task-error", text: task.ErrorMessage }));
    if (!script.firstChild) script.append(scriptOf(task) || "");
    const moment = task.IsCompleted ? "completed" : "running";
    if (artifactsFor !== moment) { // once while it runs, once more at its end
      artifactsFor = moment;
      drawArtifacts(ctx, id, artifacts).catch((error) => clear(artifacts).append(pageError(`Artifacts: ${error.message}`)));
    }
  };
  const drawStep = (child) => {
    let view = views.get(child.Id);
    if (!view) {
      if (views.size === 0) clear(steps);
      view = stepView(child);
      views.set(child.Id, view);
      steps.append(view.el);
    }
    view.update(child);
  };
  const merge = (doc) => {
    drawTask(doc.Task);
    const root = (doc.ActivityLogs || [])[0];
    if (!root) return;
    if ((root.LogElements || []).length) logSection.hidden = false;
    taskLog.append(root.LogElements || []);
    for (const child of root.Children || []) drawStep(child);
  };
  const live = (state, text) => { // shown while the page follows the task
    liveBadge.dataset.state = state;
    liveBadge.textContent = text;
    liveBadge.hidden = !text;
  };
  return { merge, live };
}

// ---- #/run

/** The form; its pool the one ``#/run?pool=WorkerPools-N`` names, else the default pool. */
function runForm(ctx, pools, workers) {
  const named = hashQuery().get("pool");
  const chosen = pools.find((pool) => pool.Id === named) || pools.find((pool) => pool.IsDefault) || pools[0];
  const pool = h("select", { id: "run-pool", name: "pool", "data-test": "run-pool" },
    pools.map((p) => h("option", { value: p.Id, text: p.Name, selected: p.Id === chosen.Id })));
  const members = h("fieldset", { class: "run-workers", "data-test": "run-workers" });
  const drawWorkers = () => {
    const here = workers.filter((w) => (w.WorkerPoolIds || []).includes(pool.value));
    clear(members).append(h("legend", { text: "Workers (optional: none chosen runs on one worker of the pool)" }));
    if (here.length === 0) members.append(empty("This pool has no workers."));
    for (const worker of here) {
      members.append(h("label", { class: "check" },
        h("input", { type: "checkbox", name: "worker", value: worker.Id, "data-test": "run-worker" }),
        worker.Name, statusBadge(worker.HealthStatus || "Unknown")));
    }
  };
  pool.addEventListener("change", drawWorkers);
  drawWorkers();
  const fields = {
    pool,
    members,
    all: h("input", { type: "checkbox", name: "all", "data-test": "run-all" }),
    syntax: h("select", { id: "run-syntax", name: "syntax", "data-test": "run-syntax" },
      SYNTAXES.map((s) => h("option", { value: s, text: s }))),
    body: h("textarea", { id: "run-body", name: "body", rows: "12", spellcheck: "false", class: "mono",
      "data-test": "run-body", placeholder: "echo \"hello from $(hostname)\"" }),
    parallelism: h("input", { id: "run-parallelism", type: "text", inputmode: "numeric", name: "parallelism",
      "data-test": "run-parallelism", placeholder: "no limit" }),
  };
  const errors = h("div", { class: "run-errors", "data-test": "run-errors", role: "alert" });
  const help = h("div", { class: "card run-help" },
    h("h2", { text: "How it runs" }),
    h("p", { text: "With no worker chosen, one healthy worker of the pool runs the script; choose workers, "
      + "or every worker, to run it on each of them." }),
    h("p", { text: "Its output appears live on the task's page. A line ##octopus[setVariable name='<base64>' "
      + "value='<base64>'] sets an output variable." }));
  const submit = h("button", { type: "submit", class: "button primary action", "data-test": "run-submit", text: "Run" });
  const form = h("form", { class: "run-form", novalidate: true },
    h("div", { class: "card" },
      h("label", { for: "run-pool", text: "Worker pool" }), pool,
      members,
      h("label", { class: "check" }, fields.all, "Run on every worker of the pool"),
      h("label", { for: "run-syntax", text: "Syntax" }), fields.syntax,
      h("label", { for: "run-body", text: "Script" }), fields.body,
      h("label", { for: "run-parallelism" }, "At most this many workers at once ",
        h("span", { class: "hint", text: "(optional)" })), fields.parallelism,
      h("div", { class: "form-buttons" }, submit)),
    h("div", { class: "run-side" }, errors, help));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    runScript(ctx, fields, errors, submit);
  });
  return form;
}

function runArguments(fields) {
  const args = { WorkerpoolId: fields.pool.value, Syntax: fields.syntax.value, ScriptBody: fields.body.value };
  const machines = [...fields.members.querySelectorAll("input[name=worker]:checked")].map((box) => box.value);
  if (machines.length) args.MachineIds = machines;
  if (fields.all.checked) args.TargetAllWorkers = true;
  const limit = fields.parallelism.value.trim();
  // sent as typed unless a whole number: the hub's message names what it expects
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
    const list = error.errors && error.errors.length ? error.errors : [error.message];
    errors.append(h("div", { class: "form-error", "data-test": "run-error" },
      `The hub did not run the script${error.status ? ` (HTTP ${error.status})` : ""}:`,
      h("ul", {}, list.map((text) => h("li", { text })))));
  } finally {
    submit.disabled = false;
  }
}

async function renderRun(ctx) {
  ctx.main.append(heading("Run a script"));
  if (!ctx.canChange) {
    ctx.main.append(empty("This API key can look but not run scripts: sign in with a key that may change the hub."));
    return;
  }
  const [pools, workers] = await Promise.all([ctx.api.get("/api/workerpools/all"), ctx.api.get("/api/workers/all")]);
  if (pools.length === 0) {
    ctx.main.append(empty("There is no worker pool yet: create one on the Pools page first."));
    return;
  }
  ctx.main.append(runForm(ctx, pools, workers));
}

export const routes = [
  { pattern: /^#\/tasks\/?(\?.*)?$/, title: "Tasks", render: renderList },
  { pattern: /^#\/tasks\/([^/?#]+)$/, title: "Task", render: renderTask },
  { pattern: /^#\/run\/?(\?.*)?$/, title: "Run a script", render: renderRun },
];
