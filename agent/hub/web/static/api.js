// The hub's REST API as the page uses it: the key in a header (never in a URL),
// JSON in and out, the hub's own error messages kept for the person to read.

export const KEY_HEADER = "X-Octopus-ApiKey";

/** A request the hub refused (status 4xx/5xx) or could not be sent (status 0). */
export class ApiError extends Error {
  constructor(status, message, errors = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.errors = errors;
  }
}

/** The hub's ErrorMessage and its Errors, joined once each ("a: b; c"). */
export function errorText(body, fallback) {
  const message = body && typeof body.ErrorMessage === "string" ? body.ErrorMessage : "";
  const errors = body && Array.isArray(body.Errors) ? body.Errors.map(String) : [];
  const extra = errors.filter((e) => e && e !== message);
  if (!message && !extra.length) return fallback;
  if (!extra.length) return message;
  return message ? `${message} ${extra.join("; ")}` : extra.join("; ");
}

// a proxy in front of the hub answers these when the hub itself is down
const GONE = new Set([502, 503, 504]);
// a request unanswered this long is given up: on a frozen connection (a laptop's sleep,
// a NAT that forgot it) it would wait forever and hold one of the browser's few
// connections to the hub, which the page's other requests then queue behind
export const REQUEST_TIMEOUT_MS = 20_000;

/**
 * Api(key, reach): get/post/put/del(path, body?) → the parsed JSON (null when
 * empty) or a thrown ApiError. reach.down(error) is told when the hub cannot be
 * reached, reach.up() whenever it answers (whatever the status).
 */
export class Api {
  constructor(key, reach = {}) {
    this.key = key;
    this.reach = reach;
  }

  headers(extra = {}) {
    return { [KEY_HEADER]: this.key, Accept: "application/json", ...extra };
  }

  async request(method, path, body) {
    const init = {
      method, headers: this.headers(), cache: "no-store", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      this.reach.down?.(error);
      const why = error.name === "TimeoutError"
        ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : error.message || error;
      throw new ApiError(0, `cannot reach the hub (${why})`);
    }
    if (GONE.has(response.status)) {
      this.reach.down?.(new Error(`HTTP ${response.status}`));
      throw new ApiError(response.status, `the hub is not answering (HTTP ${response.status})`);
    }
    this.reach.up?.();
    return parse(response);
  }

  get(path) { return this.request("GET", path); }
  post(path, body = {}) { return this.request("POST", path, body); }
  put(path, body) { return this.request("PUT", path, body); }
  del(path) { return this.request("DELETE", path); }
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const fallback = `the hub answered HTTP ${response.status}`;
    throw new ApiError(response.status, errorText(body, fallback),
      body && Array.isArray(body.Errors) ? body.Errors.map(String) : []);
  }
  return body;
}

/** The open root document (/api): the hub's version; no key needed. */
export async function hubRoot() {
  const response = await fetch("/api", {
    headers: { Accept: "application/json" }, cache: "no-store", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  if (!response.ok) throw new ApiError(response.status, `GET /api answered ${response.status}`);
  return response.json();
}

/** A query string from an object, leaving out empty values ("?a=1&b=x,y"). */
export function query(params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined
    && !(Array.isArray(v) && !v.length));
  if (!pairs.length) return "";
  const search = new URLSearchParams();
  for (const [k, v] of pairs) search.set(k, Array.isArray(v) ? v.join(",") : String(v));
  return `?${search}`;
}
