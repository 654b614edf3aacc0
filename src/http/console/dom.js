// DOM helpers. Every value goes in as text (text nodes, textContent,
// properties): nothing here, nor anywhere in the console, parses data as HTML.

/** h("button", { class: "x", onclick: fn }, "text", child…) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value" || k === "checked" || k === "disabled" || k === "hidden" || k === "selected") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** An RFC 3339 instant as local text, or "—". */
export function when(t) {
  if (!t) return "—";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

/** A short one-line rendering of any JSON value, as text. */
export function brief(v, max = 80) {
  if (v === undefined || v === null) return "";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

/** A message line that shows an error (or clears itself). */
export function messageLine() {
  const el = h("p", { class: "message", role: "status" });
  return {
    el,
    error(e) { el.className = "message error"; el.textContent = e?.message ?? String(e); },
    ok(text) { el.className = "message ok"; el.textContent = text; },
    clear() { el.className = "message"; el.textContent = ""; },
  };
}

/** A card with a title. */
export function card(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

/** A table from column titles and rows of cells. */
export function table(columns, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

/** An inline confirmation: the first click asks, the second acts. */
export function confirmButton(label, question, action) {
  const wrap = h("span", { class: "confirm" });
  const ask = h("button", { type: "button", class: "danger", onclick: () => {
    clear(wrap);
    append(wrap, [
      h("span", { class: "question" }, question),
      h("button", { type: "button", class: "danger", "data-confirm": "yes", onclick: action }, `Yes, ${label.toLowerCase()}`),
      h("button", { type: "button", onclick: () => { clear(wrap); wrap.append(ask); } }, "Cancel"),
    ]);
  } }, label);
  wrap.append(ask);
  return wrap;
}

/** A box showing a secret once, with a copy button. */
export function secretOnce(title, secret, note) {
  const input = h("input", { type: "text", readonly: true, value: secret, size: 60, class: "secret", spellcheck: "false" });
  const copied = h("span", { class: "copied" });
  const box = h("div", { class: "once", role: "alert" },
    h("strong", {}, title),
    h("div", { class: "row" }, input,
      h("button", { type: "button", class: "copy", onclick: async () => {
        try { await navigator.clipboard.writeText(secret); copied.textContent = "Copied."; }
        catch { input.select(); copied.textContent = "Selected: press Ctrl+C to copy."; }
      } }, "Copy"), copied),
    h("p", { class: "warning" }, note),
    h("button", { type: "button", onclick: () => box.remove() }, "Done"));
  return box;
}

export function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}
