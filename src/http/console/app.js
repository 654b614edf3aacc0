// The console's entry: the key (sessionStorage only), the viewer, the parts
// the key's scopes allow and the server has (feature probes), navigation.
import { h, clear, append } from "./dom.js";
import { keyStore, request, probe, onUnauthorized } from "./api.js";
import * as keys from "./keys.js";
import * as content from "./content.js";
import * as files from "./files.js";
import * as usage from "./usage.js";
import * as webhooks from "./webhooks.js";

const $ = (id) => document.getElementById(id);

/** Query fields of features that may be missing on this server (SPEC §7, §8, §10, §11). */
const PROBES = {
  files: "files(limit: 1)",
  search: 'search(query: "probe")',
  recordVersions: 'recordVersions(id: "0")',
  keyUsage: 'keyUsage(from: "2000-01-01T00:00:00.000Z", to: "2000-01-02T00:00:00.000Z")',
};

const PARTS = [
  { id: "keys", title: "API keys", mod: keys },
  { id: "usage", title: "Usage", mod: usage },
  { id: "content", title: "Content", mod: content },
  { id: "files", title: "Files", mod: files },
  { id: "webhooks", title: "Webhooks", mod: webhooks },
];

let ctx = null;

function showLogin(message) {
  ctx = null;
  $("login").hidden = false;
  $("forget").hidden = true;
  clear($("nav"));
  clear($("who"));
  clear($("part"));
  $("login-error").textContent = message || "";
  $("login-key").value = "";
  $("login-key").focus();
}

async function connect() {
  const r = await request(`{ viewer {
      key { id name type mode scopes maskedKey rateLimitPerHour }
      project { id name }
      rateLimit { limit remaining resetAt } } }`);
  if (r.status === 401 || !r.data?.viewer) {
    keyStore.forget();
    return showLogin(r.status === 401
      ? "quire refused this key (revoked, expired or mistyped)."
      : `quire did not accept the request: ${r.errors?.[0]?.message ?? r.status}`);
  }
  const viewer = r.data.viewer;
  const scopes = new Set(viewer.key.scopes);
  const features = await probe(PROBES);
  const can = (s) => scopes.has(s);
  ctx = {
    viewer,
    can,
    features,
    // Drafts are visible only to sk_test_ keys holding drafts:read (SPEC §2).
    preview: viewer.key.type === "SECRET" && viewer.key.mode === "TEST" && can("drafts:read"),
  };
  $("login").hidden = true;
  $("forget").hidden = false;
  clear($("who"));
  append($("who"), [
    h("span", { class: "project" }, viewer.project.name), " · ",
    h("span", { class: "keyname" }, viewer.key.name), " ",
    h("code", {}, viewer.key.maskedKey), " ",
    h("span", { class: `badge ${viewer.key.type.toLowerCase()}` }, `${viewer.key.type} ${viewer.key.mode}`),
  ]);
  const nav = clear($("nav"));
  const visible = PARTS.filter((p) => p.mod.allowed(ctx));
  for (const p of visible) {
    nav.append(h("a", { href: `#${p.id}`, "data-part": p.id }, p.title));
  }
  if (!visible.length) {
    clear($("part")).append(h("p", { class: "card" }, "This key may not use any part of the console."));
    return;
  }
  route();
}

function route() {
  if (!ctx) return;
  const parts = PARTS.filter((p) => p.mod.allowed(ctx));
  const id = location.hash.slice(1);
  const part = parts.find((p) => p.id === id) || parts[0];
  if (!part) return;
  for (const a of $("nav").querySelectorAll("a")) a.classList.toggle("active", a.dataset.part === part.id);
  const root = clear($("part"));
  root.dataset.part = part.id;
  part.mod.render(root, ctx).catch((e) => root.append(h("p", { class: "message error" }, e?.message ?? String(e))));
}

window.addEventListener("hashchange", route);
onUnauthorized(() => {
  if (ctx) { keyStore.forget(); showLogin("quire refused the key (revoked or expired): paste another one."); }
});

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("login-key").value.trim();
  if (!key) return;
  keyStore.set(key);
  connect().catch((err) => showLogin(String(err)));
});
$("forget").addEventListener("click", () => {
  keyStore.forget();
  for (const k of Object.keys(sessionStorage)) if (k.startsWith("graphiql:")) sessionStorage.removeItem(k);
  showLogin("The key was forgotten.");
});

if (keyStore.get()) connect().catch((err) => showLogin(String(err)));
else showLogin("");
