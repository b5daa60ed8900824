// The page's shell: sign-in, the header (version, counts, navigation), the
// "cannot reach the hub" banner and the router that renders each view.
//
// The view interface (every view module follows it): a module exports
// `routes`, a list of {pattern: RegExp on location.hash, title, render(ctx, match)}.
// ctx = {api, main, user, canChange, navigate(hash), notice(text, kind), onLeave(fn),
// refresh()}; main is a fresh element per render (a late render of a route the
// person left writes into a detached node); onLeave(fn) runs when the route changes.

import { Api, ApiError, hubRoot } from "./api.js";
import { clear, h, pageError, refreshAgo } from "./dom.js";
import { loadCounts, renderCounts } from "./counts.js";
import * as dashboard from "./dashboard.js";
import * as workers from "./workers.js";
import * as pools from "./pools.js";
import * as policies from "./policies.js";

const KEY = "tentacle.apikey"; // sessionStorage only: gone when the browser session ends
const COUNTS_EVERY_MS = 4000;
const AGO_EVERY_MS = 30000; // "3 minutes ago" stays true while nothing else changes
const RETRY_EVERY_MS = 2000; // while the hub cannot be reached: notice its return soon
// views of other modules, loaded when present (tasks.js: the tasks pages)
const OPTIONAL_VIEWS = ["./tasks.js"];
const NAV = [
  ["#/", "Dashboard"], ["#/workers", "Workers"], ["#/pools", "Pools"],
  ["#/policies", "Machine policies"], ["#/tasks", "Tasks"], ["#/run", "Run a script"],
];

const state = {
  api: null, user: null, canChange: false, routes: [], leave: [],
  timer: null, version: "", rendering: 0, down: false,
};

const els = {
  top: document.getElementById("top"),
  banner: document.getElementById("banner"),
  main: document.getElementById("app"),
  notices: document.getElementById("notices"),
};

const reach = {
  down(error) {
    els.banner.textContent = `Cannot reach the hub at ${location.host} (${error.message || error}). `
      + "Retrying every few seconds; what is shown may be out of date.";
    els.banner.hidden = false;
    state.down = true;
  },
  up() {
    els.banner.hidden = true;
    state.down = false;
  },
};

/** A short message in the corner (text, or nodes such as a link): kind "ok" | "error" | "info". */
function notice(content, kind = "info") {
  const item = h("div", { class: `notice notice-${kind}`, "data-test": "notice", role: "status" }, content);
  els.notices.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 10000 : 5000);
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function loadRoutes() {
  const modules = [dashboard, workers, pools, policies];
  for (const name of OPTIONAL_VIEWS) {
    try {
      modules.push(await import(name));
    } catch (error) {
      console.info(`${name} is not part of this page yet`, error);
    }
  }
  state.routes = modules.flatMap((m) => m.routes || []);
}

function leaveRoute() {
  const fns = state.leave.splice(0);
  for (const fn of fns) {
    try { fn(); } catch (error) { console.error("a view's cleanup failed", error); }
  }
}

/** Renders the view of location.hash into a fresh element under <main>. */
async function route() {
  if (!state.api) return;
  leaveRoute();
  const hash = location.hash || "#/";
  const path = hash.split("?")[0];
  markNav(path);
  const main = h("div", { class: "view" });
  clear(els.main).append(main);
  const token = ++state.rendering;
  const found = findRoute(hash);
  if (!found) {
    document.title = "Not found · Tentacle hub";
    main.append(pageError(`There is no page ${path} here. Pick one from the menu above.`));
    return;
  }
  const [view, match] = found;
  document.title = `${view.title} · Tentacle hub`;
  try {
    await view.render(context(main, token), match);
  } catch (error) {
    if (token !== state.rendering) return;
    console.error(error);
    main.append(pageError(describe(error)));
  }
}

function findRoute(hash) {
  for (const view of state.routes) {
    const match = hash.match(view.pattern);
    if (match) return [view, match];
  }
  return null;
}

function describe(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return `Cannot reach the hub: ${error.message}`;
    return `The hub said (HTTP ${error.status}): ${error.message}`;
  }
  return `Something went wrong showing this page: ${error.message || error}`;
}

function context(main, token) {
  // a render that ends after the person moved on is cleaned up at once
  const onLeave = (fn) => (token === state.rendering ? state.leave.push(fn) : fn());
  return {
    api: state.api, main, user: state.user, canChange: state.canChange,
    navigate, notice, onLeave, refresh: refreshCounts,
  };
}

function markNav(path) {
  for (const link of els.top.querySelectorAll("nav a")) {
    const target = link.getAttribute("href");
    const active = target === "#/" ? path === "#/" || path === "" : path.startsWith(target);
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** Who the key belongs to and whether it may change things (401 for a bad key). */
async function identify(api) {
  const me = await api.get("/api/users/me");
  return { user: me, canChange: me.CanChange === true };
}

function showSignIn(message = "") {
  state.api = null;
  clearTimeout(state.timer);
  leaveRoute();
  clear(els.top).append(h("div", { class: "brand" }, h("span", { class: "logo", text: "◉" }),
    "Tentacle hub", state.version && h("span", { class: "version", text: state.version })));
  const input = h("input", { id: "signin-key", name: "key", type: "password", required: true,
    autocomplete: "off", spellcheck: "false", placeholder: "API-…", "data-test": "signin-key" });
  const error = h("p", { class: "form-error", "data-test": "signin-error", role: "alert",
    hidden: !message, text: message });
  const button = h("button", { type: "submit", class: "button primary", "data-test": "signin-submit",
    text: "Sign in" });
  const form = h("form", { class: "signin card", "data-test": "signin" },
    h("h1", { text: "Sign in" }),
    h("p", { class: "muted", text: "Paste an API key of this hub. It is kept for this browser tab only "
      + "(session storage) and sent as a header, never in a link." }),
    h("label", { for: "signin-key", text: "API key" }), input, error, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(input.value.trim(), error, button);
  });
  clear(els.main).append(form);
  document.title = "Sign in · Tentacle hub";
  input.focus();
}

async function signIn(key, errorEl, button) {
  if (!key) {
    errorEl.textContent = "Enter an API key (it starts with API-).";
    errorEl.hidden = false;
    return;
  }
  button.disabled = true;
  try {
    await start(key);
  } catch (error) {
    errorEl.textContent = error instanceof ApiError && error.status === 401
      ? `The hub refused this key: ${error.message}` : describe(error);
    errorEl.hidden = false;
  } finally {
    button.disabled = false;
  }
}

/** Signs in with key (throws when the hub refuses it) and shows the page. */
async function start(key) {
  const api = new Api(key, reach);
  const { user, canChange } = await identify(api);
  sessionStorage.setItem(KEY, key);
  Object.assign(state, { api, user, canChange });
  document.body.classList.toggle("read-only", !canChange);
  renderHeader();
  await route();
  clearTimeout(state.timer);
  keepCounting(api);
}

/** Refreshes the counts now and again while signed in with api (more often while the
 * hub is down, so the banner goes soon after it is back). */
async function keepCounting(api) {
  await refreshCounts();
  if (state.api !== api) return;
  state.timer = setTimeout(() => keepCounting(api), state.down ? RETRY_EVERY_MS : COUNTS_EVERY_MS);
}

function signOut() {
  sessionStorage.removeItem(KEY);
  state.user = null;
  showSignIn();
}

function renderHeader() {
  const who = state.user.DisplayName || state.user.Username || "API key";
  clear(els.top).append(
    h("div", { class: "top-row" },
      h("a", { class: "brand", href: "#/" }, h("span", { class: "logo", text: "◉" }), "Tentacle hub",
        h("span", { class: "version", "data-test": "hub-version", text: state.version })),
      h("div", { class: "counts", "data-test": "counts" }),
      h("div", { class: "who" },
        h("span", { class: "who-name", "data-test": "who", text: who }),
        h("span", { class: state.canChange ? "badge badge-info" : "badge badge-off",
          "data-test": "permission", text: state.canChange ? "can change" : "read only" }),
        h("button", { type: "button", class: "button small", "data-test": "signout",
          on: { click: signOut }, text: "Sign out" }))),
    h("nav", { class: "nav" }, NAV.map(([href, text]) => h("a", { href, text }))));
}

async function refreshCounts() {
  if (!state.api) return;
  const api = state.api;
  try {
    const counts = await loadCounts(api);
    const holder = els.top.querySelector("[data-test=counts]");
    if (holder && api === state.api) renderCounts(holder, counts);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showSignIn(`Signed out: ${error.message}`);
    // status 0: the banner says so already
  }
}

async function readVersion() {
  try {
    const root = await hubRoot();
    state.version = `v${root.Version}`;
    reach.up();
    for (const el of document.querySelectorAll("[data-test=hub-version], .brand .version")) {
      el.textContent = state.version;
    }
    return true;
  } catch (error) {
    reach.down(error);
    return false;
  }
}

async function boot() {
  await loadRoutes();
  window.addEventListener("hashchange", route);
  setInterval(() => refreshAgo(els.main), AGO_EVERY_MS);
  while (!(await readVersion())) {
    await new Promise((resolve) => setTimeout(resolve, RETRY_EVERY_MS));
  }
  const key = sessionStorage.getItem(KEY);
  if (!key) return showSignIn();
  try {
    await start(key);
  } catch (error) {
    sessionStorage.removeItem(KEY);
    showSignIn(describe(error));
  }
}

boot();
