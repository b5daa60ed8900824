// Building the page from data, safely: elements and text nodes only, never
// innerHTML, so a worker named "<img onerror=...>" shows as those characters.

/**
 * h(tag, attrs, ...children): a new element.
 * attrs: class, text (a text node), on: {event: fn}, data-*, any other attribute
 * (false/null/undefined leave it out, true sets it empty). children: nodes,
 * strings (text nodes), arrays of them, null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") el.append(document.createTextNode(String(value)));
    else if (name === "on") {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (name === "value" && "value" in el) el.value = String(value);
    else if (name === "checked" && "checked" in el) el.checked = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

/** Removes every child of el; returns el. */
export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** How long ago (or ahead) a moment is, in words: "just now", "3 minutes ago". */
export function ago(date, now = new Date()) {
  const seconds = Math.round((now.getTime() - date.getTime()) / 1000);
  const future = seconds < 0;
  const s = Math.abs(seconds);
  const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  if (s < 10) return "just now";
  for (const [unit, size] of units) {
    if (s >= size) {
      const n = Math.floor(s / size);
      const words = `${n} ${unit}${n === 1 ? "" : "s"}`;
      return future ? `in ${words}` : `${words} ago`;
    }
  }
  return "just now";
}

/**
 * when(iso): a <time> element showing the local time and how long ago it was
 * (the exact moment in its title), or "never" for an empty value.
 */
export function when(iso) {
  if (!iso) return h("span", { class: "muted", text: "never" });
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", { text: String(iso) });
  const local = date.toLocaleString(undefined, {
    dateStyle: "medium", timeStyle: "short",
  });
  return h("time", { datetime: iso, title: date.toISOString(), class: "when" },
    local, h("span", { class: "ago", "data-ago": iso, "data-prefix": " · ", text: ` · ${ago(date)}` }));
}

/** since(iso): a <time> saying how long ago ("3 minutes ago"), the local time in its title. */
export function since(iso) {
  if (!iso) return h("span", { class: "muted", text: "never" });
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", { text: String(iso) });
  return h("time", { datetime: iso, title: date.toLocaleString(), "data-ago": iso, text: ago(date) });
}

/** Brings every "… ago" under root up to date (the page calls it now and then). */
export function refreshAgo(root = document) {
  const now = new Date();
  for (const el of root.querySelectorAll("[data-ago]")) {
    el.textContent = `${el.dataset.prefix || ""}${ago(new Date(el.dataset.ago), now)}`;
  }
}

const TONES = {
  Healthy: "good", Success: "good",
  HasWarnings: "warn", Cancelling: "warn", TimedOut: "warn", Queued: "info", Draining: "warn",
  Unhealthy: "bad", Failed: "bad",
  Unavailable: "off", Canceled: "off", Unknown: "off", Disabled: "off",
  Executing: "run",
  // a step's statuses (the activity log's)
  Running: "run", Pending: "info",
};

const WORDS = { HasWarnings: "Has warnings", TimedOut: "Timed out" };

/** A coloured badge for a health status or a task state (data-status = the raw value). */
export function statusBadge(text) {
  const value = String(text ?? "Unknown");
  const tone = TONES[value] || "off";
  return h("span", { class: `badge badge-${tone}`, "data-status": value,
    text: WORDS[value] || value });
}

/** Megabytes in a person's unit: "820 MB", "12.4 GB". */
export function megabytes(value) {
  if (value === null || value === undefined) return "—";
  if (value >= 1024 * 1024) return `${(value / 1024 / 1024).toFixed(1)} TB`;
  if (value >= 1024) return `${(value / 1024).toFixed(1)} GB`;
  return `${value} MB`;
}

/**
 * A table whose cells carry their column's name (data-label), so on a narrow
 * screen each row becomes a card that still says what each value is.
 * columns: [{label, cell: (row) => node|string, class?}]; rowAttrs(row) → attrs.
 */
export function table(columns, rows, rowAttrs = () => ({}), kind = "") {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { text: c.label, class: c.class }))));
  const body = h("tbody", {}, rows.map((row) => h("tr", rowAttrs(row),
    columns.map((c) => h("td", { "data-label": c.label, class: c.class },
      h("div", { class: "cell" }, c.cell(row)))))));
  return h("div", { class: "table-wrap" }, h("table", { class: kind ? `grid grid-${kind}` : "grid" }, head, body));
}

/** A page's heading row: a title and, on the right, its buttons. */
export function heading(title, ...buttons) {
  return h("div", { class: "page-head" }, h("h1", { text: title }),
    h("div", { class: "page-actions" }, buttons));
}

/** An empty state: a short message where a list would be. */
export function empty(text) {
  return h("p", { class: "empty", text });
}

/** An error shown in place of a page (data-test=page-error). */
export function pageError(text) {
  return h("div", { class: "page-error", "data-test": "page-error", role: "alert" }, text);
}

/**
 * A confirmation of our own (a modal <dialog>, not window.confirm): resolves
 * true when the person confirms, false when they cancel or press Escape.
 */
export function confirmDialog({ title, text, confirm = "Confirm", danger = true }) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "button", class: danger ? "button danger" : "button primary",
      "data-test": "confirm-ok", text: confirm });
    const cancel = h("button", { type: "button", class: "button", "data-test": "confirm-cancel",
      text: "Cancel" });
    const dialog = h("dialog", { class: "dialog", "data-test": "confirm" },
      h("h2", { text: title }), h("p", { text }),
      h("div", { class: "dialog-buttons" }, cancel, ok));
    const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    ok.addEventListener("click", () => done(true));
    cancel.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** A part of location.hash decoded, or as it is when its escapes are broken
 * ("%E0"): decodeURIComponent would throw "URI malformed" instead. */
export function decoded(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** ANSI escape sequences (colours, cursor moves) a program writes for a terminal. */
const ANSI = /\x1b(?:\[[0-?]*[ -\/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;

/** text without its ANSI escape sequences: a log shows "red", not "[31mred[0m". */
export function withoutAnsi(text) {
  return String(text).replace(ANSI, "");
}

/** The query after the route in location.hash ("#/workers?pool=x" → pool=x). */
export function hashQuery(hash = location.hash) {
  const at = hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
}

/** A hash for path with params as its query, leaving out empty values. */
export function hashWith(path, params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) search.set(k, v);
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}
