// Forms of the pools and policies views: labelled fields, and the hub's 422
// errors shown beside the form (each error of the hub on a line of its own).

import { ApiError } from "./api.js";
import { clear, h } from "./dom.js";

let counter = 0;

/** A labelled field: label, control (an input/select/textarea), an optional hint. */
export function field(label, control, hint = "", wide = false) {
  if (!control.id) control.id = `field-${++counter}`;
  const isCheck = control.type === "checkbox";
  const labelEl = isCheck
    ? h("label", { class: "check", for: control.id }, control, label)
    : h("label", { for: control.id, text: label });
  return h("div", { class: wide ? "field wide" : "field" }, labelEl, isCheck ? null : control,
    hint ? h("span", { class: "hint", text: hint }) : null);
}

export function input(name, value, attrs = {}) {
  return h("input", { type: "text", name, "data-test": `field-${name}`, value: value ?? "", ...attrs });
}

export function number(name, value, attrs = {}) {
  return input(name, value, { type: "number", inputmode: "numeric", step: "1", ...attrs });
}

export function checkbox(name, checked) {
  return h("input", { type: "checkbox", name, "data-test": `field-${name}`, checked: Boolean(checked) });
}

export function select(name, value, choices) {
  return h("select", { name, "data-test": `field-${name}` },
    choices.map(([v, text]) => h("option", { value: v, text, selected: v === value })));
}

export function textarea(name, value, attrs = {}) {
  return h("textarea", { name, "data-test": `field-${name}`, spellcheck: "false", class: "mono", ...attrs },
    value ?? "");
}

/** A whole number from a field's text, or the text itself (the hub says what is wrong). */
export function whole(text) {
  const trimmed = String(text).trim();
  return /^-?\d+$/.test(trimmed) ? Number(trimmed) : trimmed;
}

/**
 * An editor: the form on the left, the hub's answer (errors) beside it.
 * save() sends the form; it returns what to say on success, or throws an ApiError.
 */
export function editor({ title, intro, fields, save, cancelHref, submitText = "Save" }) {
  const errors = h("div", { class: "form-error", "data-test": "form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "button primary action", "data-test": "form-submit",
    text: submitText });
  const form = h("form", { class: "card editor-form", novalidate: true },
    h("div", { class: "form-grid" }, fields),
    h("div", { class: "form-buttons" }, submit,
      h("a", { class: "button", href: cancelHref, "data-test": "form-cancel", text: "Cancel" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    errors.hidden = true;
    try {
      await save();
    } catch (error) {
      showErrors(errors, error);
    } finally {
      submit.disabled = false;
    }
  });
  const aside = h("aside", { class: "editor-aside" }, intro ? h("p", { class: "muted", text: intro }) : null, errors);
  return h("div", { class: "editor" }, h("h1", { text: title }), h("div", { class: "editor-row" }, form, aside));
}

function showErrors(el, error) {
  const list = error instanceof ApiError && error.errors.length ? error.errors : [error.message || String(error)];
  const lead = error instanceof ApiError && error.status === 422
    ? "The hub did not save this:" : `The hub refused (HTTP ${error.status ?? "?"}):`;
  clear(el).append(h("strong", { text: lead }), h("ul", {}, list.map((text) => h("li", { text }))));
  el.hidden = false;
  el.scrollIntoView({ block: "nearest" }); // a long form: the answer is in view, wherever one was
}
