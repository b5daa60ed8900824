// Adding an SSH worker (#/workers/new-ssh): the host, its host key's fingerprint
// (fetched by the hub for the person to confirm, or pasted), the login (a password,
// or a private key typed or read from a file in the browser, with its passphrase),
// the pools and the policy. On submit: the account, then the worker; if the hub
// refuses the worker, the account just made is deleted again (as the CLI does).
//
// Secrets stay in this form's fields and the two POST bodies: the secret fields
// have no name (a native submit, should the script fail, sends nothing of them),
// nothing is put in the URL or the page's storage, and they are cleared on leaving.

import { ApiError, query } from "./api.js";
import { clear, h } from "./dom.js";
import { checkbox, editor, field, input, number, select, textarea, whole } from "./forms.js";

export const routes = [
  { pattern: /^#\/workers\/new-ssh$/, title: "Add an SSH worker", render },
];

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** A secret field: no name (never part of a form submission), never autofilled. */
function secret(test, attrs = {}) {
  return h("input", { type: "password", "data-test": test, autocomplete: "new-password",
    spellcheck: "false", ...attrs });
}

async function render(ctx) {
  if (!ctx.canChange) {
    ctx.main.append(h("p", { class: "page-error", "data-test": "page-error",
      text: "This key is read only: it cannot add workers." }));
    return;
  }
  const [pools, policies] = await Promise.all([ctx.api.get("/api/workerpools/all"),
    ctx.api.get("/api/machinepolicies/all")]);
  const f = fields(pools, policies);
  const fingerprint = fingerprintPart(ctx, f);
  const login = loginPart(f);
  ctx.onLeave(() => { f.password.value = ""; f.key.value = ""; f.passphrase.value = ""; });
  ctx.main.append(editor({
    title: "Add an SSH worker",
    intro: "A machine the hub reaches over SSH, without an agent (it needs only python3 for "
      + "deployments). The hub pins the SSH server's host key: fetch its fingerprint and compare "
      + "it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on that machine. The login is "
      + "kept encrypted by the hub, as an account named as the worker.",
    fields: [
      field("Name", f.name, "", true),
      field("Host", f.host, "A host name or an IP address."),
      field("Port", f.port),
      fingerprint,
      field("Username", f.username, "The user the hub logs in as.", true),
      login,
      h("fieldset", { class: "wide", "data-test": "ssh-pools" }, h("legend", { text: "Worker pools" }),
        f.pools.map(([pool, box]) => field(pool.Name, box))),
      field("Machine policy", f.policy, "", true),
    ],
    save: () => save(ctx, f),
    cancelHref: "#/workers",
    submitText: "Add SSH worker",
  }));
  f.name.focus();
}

function fields(pools, policies) {
  const defaultPolicy = policies.find((p) => p.IsDefault) || policies[0];
  return {
    name: input("Name", "", { required: true, autocomplete: "off" }),
    host: input("Host", "", { required: true, autocomplete: "off", spellcheck: "false" }),
    port: number("Port", 22, { min: "1", max: "65535" }),
    fingerprint: input("Fingerprint", "", { class: "mono", autocomplete: "off", spellcheck: "false",
      placeholder: "SHA256:…" }),
    confirmed: checkbox("FingerprintChecked", false),
    username: input("Username", "", { autocomplete: "off", spellcheck: "false" }),
    usePassword: h("input", { type: "radio", name: "login", value: "password", "data-test": "login-password",
      checked: true }),
    useKey: h("input", { type: "radio", name: "login", value: "key", "data-test": "login-key" }),
    password: secret("field-Password"),
    key: textarea("", "", { rows: 6, "data-test": "field-PrivateKey", autocomplete: "off",
      placeholder: "-----BEGIN OPENSSH PRIVATE KEY-----" }),
    keyFile: h("input", { type: "file", "data-test": "field-PrivateKeyFile" }),
    passphrase: secret("field-Passphrase"),
    pools: pools.map((pool) => [pool, h("input", { type: "checkbox", "data-test": "field-pool",
      "data-id": pool.Id, checked: pool.IsDefault })]),
    policy: select("MachinePolicyId", defaultPolicy?.Id || "", policies.map((p) => [p.Id, p.Name])),
  };
}

/** The fingerprint: fetched through the hub (discover?type=Ssh) or pasted, then confirmed. */
function fingerprintPart(ctx, f) {
  const fetchButton = h("button", { type: "button", class: "button action", "data-test": "fetch-fingerprint",
    text: "Fetch fingerprint" });
  const answer = h("div", { class: "hint", "data-test": "fingerprint-message", role: "status", hidden: true });
  const problem = h("div", { class: "form-error", "data-test": "fingerprint-error", role: "alert", hidden: true });
  const changed = () => { f.confirmed.checked = false; };
  f.fingerprint.addEventListener("input", changed);
  f.host.addEventListener("input", changed);
  f.port.addEventListener("input", changed);
  fetchButton.addEventListener("click", async () => {
    fetchButton.disabled = true;
    answer.hidden = true;
    problem.hidden = true;
    try {
      const found = await ctx.api.get(`/api/workers/discover${query({ type: "Ssh", host: f.host.value.trim(),
        port: f.port.value.trim() })}`);
      f.fingerprint.value = found.Fingerprint;
      changed();
      clear(answer).append(found.DiscoveryMessage || `The server presented ${found.Fingerprint}.`);
      answer.hidden = false;
    } catch (error) {
      clear(problem).append(h("strong", { text: "The hub could not read the host key:" }), " ",
        error instanceof ApiError ? error.message : String(error));
      problem.hidden = false;
    } finally {
      fetchButton.disabled = false;
    }
  });
  return h("fieldset", { class: "wide", "data-test": "ssh-fingerprint" }, h("legend", { text: "Host key" }),
    field("Fingerprint", f.fingerprint, "SHA256:… as `ssh-keygen -lf` prints it: fetch it, or paste the one you have."),
    h("div", { class: "form-buttons" }, fetchButton), answer, problem,
    field("I have checked this fingerprint", f.confirmed));
}

/** The login: a password, or a private key (typed, or read from a file here) and its passphrase. */
function loginPart(f) {
  const passwordPart = h("div", { "data-test": "password-part" }, field("Password", f.password));
  const keyPart = h("div", { "data-test": "key-part", hidden: true },
    field("Private key", f.key, "OpenSSH or PEM text; or read it from a file below (it stays in this page).", true),
    field("Key file", f.keyFile),
    field("Passphrase", f.passphrase, "Only if the key is encrypted."));
  const show = () => {
    passwordPart.hidden = !f.usePassword.checked;
    keyPart.hidden = !f.useKey.checked;
  };
  f.usePassword.addEventListener("change", show);
  f.useKey.addEventListener("change", show);
  f.keyFile.addEventListener("change", async () => {
    const file = f.keyFile.files[0];
    if (file) f.key.value = await file.text(); // read in the browser: the file itself goes nowhere
    f.keyFile.value = "";
  });
  const radio = (box, text) => h("label", { class: "check" }, box, text);
  return h("fieldset", { class: "wide", "data-test": "ssh-login" }, h("legend", { text: "Log in with" }),
    h("div", { class: "form-buttons" }, radio(f.usePassword, "A password"), radio(f.useKey, "A private key")),
    passwordPart, keyPart);
}

function accountBody(f) {
  const base = { Name: f.name.value.trim(), Username: f.username.value.trim() };
  if (f.usePassword.checked) {
    return { ...base, AccountType: "UsernamePassword", Password: { HasValue: true, NewValue: f.password.value } };
  }
  const phrase = f.passphrase.value;
  return { ...base, AccountType: "SshKeyPair",
    PrivateKeyFile: { HasValue: true, NewValue: f.key.value },
    PrivateKeyPassphrase: { HasValue: Boolean(phrase), NewValue: phrase || null } };
}

/** What the page itself refuses before asking the hub (the hub checks everything else). */
function problems(f) {
  const found = [];
  if (!f.name.value.trim()) found.push("Name is required.");
  if (!f.host.value.trim()) found.push("Host is required.");
  const print = f.fingerprint.value.trim();
  if (!FINGERPRINT.test(print)) {
    found.push("Fingerprint must be the host key's SHA256 fingerprint (SHA256: and 43 characters): fetch it first.");
  } else if (!f.confirmed.checked) {
    found.push("Tick \"I have checked this fingerprint\" once you have compared it with the machine's.");
  }
  if (!f.pools.some(([, box]) => box.checked)) found.push("Choose at least one worker pool.");
  return found;
}

async function save(ctx, f) {
  const found = problems(f);
  if (found.length) throw new ApiError(422, found.join(" "), found);
  const account = await ctx.api.post("/api/accounts", accountBody(f));
  const worker = {
    Name: f.name.value.trim(),
    WorkerPoolIds: f.pools.filter(([, box]) => box.checked).map(([pool]) => pool.Id),
    MachinePolicyId: f.policy.value || undefined,
    Endpoint: { CommunicationStyle: "Ssh", Host: f.host.value.trim(), Port: whole(f.port.value),
      Fingerprint: f.fingerprint.value.trim(), AccountId: account.Id },
  };
  let added;
  try {
    added = await ctx.api.post("/api/workers", worker);
  } catch (error) {
    await ctx.api.del(`/api/accounts/${account.Id}`).catch(() => {}); // nothing half-added is left
    throw error;
  }
  ctx.notice(`${added.Name} is added: the hub is checking its health now.`, "ok");
  ctx.navigate("#/workers");
}
