// API keys (SPEC §2, §12): list, create (plaintext once), rename and limit,
// rotate with grace, revoke after confirmation, export, import, audit log.
import { h, clear, append, when, brief, messageLine, card, table, confirmButton, secretOnce, field } from "./dom.js";
import { gql } from "./api.js";

const PUBLIC_SCOPES = ["records:read", "files:read", "search:read", "analytics:read", "notifications:read", "schedules:read"];
const SECRET_SCOPES = ["records:write", "records:publish", "records:delete", "drafts:read", "files:write", "files:delete",
  "schemas:read", "schemas:write", "operations:execute", "extensions:manage", "apikeys:read", "apikeys:create",
  "apikeys:update", "apikeys:delete", "apikeys:import"];

const KEY_FIELDS = "id name type mode scopes maskedKey rateLimitPerHour status createdAt lastUsedAt expiresAt revokedAt";

export function allowed(ctx) {
  return ["apikeys:read", "apikeys:create", "apikeys:import"].some(ctx.can);
}

export async function render(root, ctx) {
  const msg = messageLine();
  const once = h("div", { id: "key-once" });
  const listBox = h("div");
  root.append(msg.el, once);
  if (ctx.can("apikeys:create")) root.append(createForm(ctx, msg, once, () => refresh()));
  if (ctx.can("apikeys:read")) root.append(card("Keys", listBox));
  const audit = h("div");
  const tools = [];
  if (ctx.can("apikeys:read")) tools.push(exportBox(msg, () => loadAudit(audit, msg)));
  if (ctx.can("apikeys:import")) tools.push(importBox(msg, () => refresh()));
  if (tools.length) root.append(card("Export and import", ...tools));
  if (ctx.can("apikeys:read")) root.append(card("Audit log", audit));

  let includeRevoked = false;
  async function refresh() {
    if (!ctx.can("apikeys:read")) return;
    try {
      const d = await gql(`query ($r: Boolean) { apiKeys(includeRevoked: $r) { ${KEY_FIELDS} } }`, { r: includeRevoked });
      clear(listBox);
      const toggle = h("label", { class: "inline" },
        h("input", { type: "checkbox", checked: includeRevoked, onchange: (e) => { includeRevoked = e.target.checked; refresh(); } }),
        " show revoked and expired");
      listBox.append(toggle, keyTable(d.apiKeys, ctx, msg, once, refresh));
      loadAudit(audit, msg);
    } catch (e) { msg.error(e); }
  }
  await refresh();
}

function keyTable(list, ctx, msg, once, refresh) {
  const rows = list.map((k) => {
    const actions = h("td", { class: "actions" });
    if (k.status === "ACTIVE") {
      if (ctx.can("apikeys:update")) {
        actions.append(h("button", { type: "button", onclick: () => editRow(row, k, msg, refresh) }, "Edit"));
        actions.append(h("button", { type: "button", onclick: () => rotateForm(actions, k, msg, once, refresh) }, "Rotate"));
      }
      if (ctx.can("apikeys:delete")) {
        actions.append(confirmButton("Revoke", `Revoke “${k.name}”? Requests with it fail at once.`, async () => {
          try {
            await gql(`mutation ($id: ID!) { revokeApiKey(id: $id) { id status } }`, { id: k.id });
            msg.ok(`Revoked “${k.name}”.`);
            if (k.id === ctx.viewer.key.id) return; // the next request shows the login
            refresh();
          } catch (e) { msg.error(e); }
        }));
      }
    }
    const row = h("tr", { "data-key-id": k.id },
      h("td", { class: "name" }, k.name, k.id === ctx.viewer.key.id ? h("span", { class: "badge" }, "this key") : null),
      h("td", {}, h("code", {}, k.maskedKey)),
      h("td", {}, k.type), h("td", {}, k.mode),
      h("td", { class: "scopes" }, h("details", {}, h("summary", {}, `${k.scopes.length} scope${k.scopes.length === 1 ? "" : "s"}`), k.scopes.join(", "))),
      h("td", { class: "num" }, k.rateLimitPerHour.toLocaleString()),
      h("td", { class: `status ${k.status.toLowerCase()}` }, k.status),
      h("td", {}, when(k.lastUsedAt)),
      h("td", {}, when(k.expiresAt)),
      actions);
    return row;
  });
  return table(["Name", "Key", "Type", "Mode", "Scopes", "Limit/h", "Status", "Last used", "Expires", ""], rows, { class: "keys" });
}

/** Rotation asks for the grace period first, in place of the row's buttons. */
function rotateForm(cell, k, msg, once, refresh) {
  const grace = h("input", { type: "number", min: 0, max: 604800, value: 0, class: "grace", "aria-label": "grace seconds" });
  const form = h("form", { class: "inline", onsubmit: async (e) => {
    e.preventDefault();
    const g = Number(grace.value) || 0;
    try {
      const d = await gql(`mutation ($id: ID!, $g: Int) { rotateApiKey(id: $id, gracePeriodSeconds: $g) { key apiKey { id name } } }`, { id: k.id, g });
      clear(once).append(secretOnce(`New secret for “${d.rotateApiKey.apiKey.name}”`, d.rotateApiKey.key,
        "Copy it now: the new secret will not be shown again. " +
        (g > 0 ? `The old one keeps working for ${g} s.` : "The old one no longer works.")));
      refresh();
    } catch (err) { msg.error(err); }
  } }, "grace ", grace, " s ", h("button", { type: "submit", "data-rotate": "yes" }, "Rotate now"),
  h("button", { type: "button", onclick: refresh }, "Cancel"));
  clear(cell).append(form);
  grace.focus();
}

function editRow(row, k, msg, refresh) {
  const name = h("input", { type: "text", value: k.name, maxlength: 100, "aria-label": "name" });
  const limit = h("input", { type: "number", min: 1, max: 10000000, value: k.rateLimitPerHour, "aria-label": "limit per hour" });
  const form = h("form", { class: "inline-edit", onsubmit: async (e) => {
    e.preventDefault();
    const input = {};
    if (name.value !== k.name) input.name = name.value;
    if (Number(limit.value) !== k.rateLimitPerHour) input.rateLimitPerHour = Number(limit.value);
    try {
      await gql(`mutation ($id: ID!, $i: UpdateApiKeyInput!) { updateApiKey(id: $id, input: $i) { id } }`, { id: k.id, i: input });
      msg.ok(`Saved “${input.name ?? k.name}”.`);
      refresh();
    } catch (err) { msg.error(err); }
  } }, field("Name", name), field("Limit per hour", limit), h("button", { type: "submit" }, "Save"),
  h("button", { type: "button", onclick: refresh }, "Cancel"));
  const td = h("td", { colspan: 10 }, form);
  clear(row).append(td);
}

function createForm(ctx, msg, once, refresh) {
  const mine = new Set(ctx.viewer.key.scopes);
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 100 });
  const type = h("select", { name: "type" }, h("option", { value: "SECRET" }, "secret (sk_)"), h("option", { value: "PUBLIC" }, "public (pk_)"));
  const mode = h("select", { name: "mode" }, h("option", { value: "TEST" }, "test"),
    ctx.viewer.key.mode === "LIVE" ? h("option", { value: "LIVE" }, "live") : null);
  const limit = h("input", { type: "number", name: "limit", min: 1, max: 10000000, placeholder: "server default" });
  const expires = h("input", { type: "datetime-local", name: "expires" });
  const boxes = [...PUBLIC_SCOPES, ...SECRET_SCOPES].map((s) =>
    h("label", { class: `scope${PUBLIC_SCOPES.includes(s) ? " public" : ""}`, title: mine.has(s) ? "" : "this key does not hold it" },
      h("input", { type: "checkbox", value: s, disabled: !mine.has(s) }), s));
  const syncScopes = () => {
    for (const l of boxes) {
      const cb = l.querySelector("input");
      const secretOnly = !l.classList.contains("public");
      cb.disabled = !mine.has(cb.value) || (type.value === "PUBLIC" && secretOnly);
      if (cb.disabled) cb.checked = false;
    }
  };
  type.addEventListener("change", syncScopes);
  syncScopes();
  const form = h("form", { id: "create-key", autocomplete: "off", onsubmit: async (e) => {
    e.preventDefault();
    const input = {
      name: name.value, type: type.value, mode: mode.value,
      scopes: boxes.map((l) => l.querySelector("input")).filter((c) => c.checked).map((c) => c.value),
    };
    if (limit.value) input.rateLimitPerHour = Number(limit.value);
    if (expires.value) input.expiresAt = new Date(expires.value).toISOString();
    try {
      const d = await gql(`mutation ($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id name } } }`, { i: input });
      clear(once).append(secretOnce(`Key “${d.createApiKey.apiKey.name}” created`, d.createApiKey.key,
        "Copy it now: this key will not be shown again. quire keeps only its hash."));
      form.reset();
      syncScopes();
      msg.clear();
      refresh();
    } catch (err) { msg.error(err); }
  } },
  h("div", { class: "row" }, field("Name", name), field("Type", type), field("Mode", mode),
    field("Limit per hour", limit), field("Expires", expires)),
  h("fieldset", { class: "scopes" }, h("legend", {}, "Scopes (only those this key holds can be given)"), boxes,
    h("button", { type: "button", class: "link", onclick: () => {
      for (const l of boxes) { const cb = l.querySelector("input"); if (!cb.disabled) cb.checked = true; }
    } }, "select every scope allowed")),
  h("button", { type: "submit" }, "Create key"));
  return card("Create a key", form);
}

function exportBox(msg, exported) {
  return h("div", { class: "row" }, h("button", { type: "button", id: "export-keys", onclick: async () => {
    try {
      const d = await gql(`{ exportApiKeys }`);
      const blob = new Blob([JSON.stringify(d.exportApiKeys, null, 2)], { type: "application/json" });
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: `quire-keys-${new Date().toISOString().slice(0, 10)}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      msg.ok(`Exported ${d.exportApiKeys?.keys?.length ?? 0} keys (hashes only, never a plaintext).`);
      exported();
    } catch (e) { msg.error(e); }
  } }, "Export keys (JSON)"));
}

function importBox(msg, refresh) {
  const file = h("input", { type: "file", accept: "application/json,.json", "aria-label": "exported keys file" });
  const mode = h("select", { "aria-label": "import mode" },
    h("option", { value: "ADD_NEW_ONLY" }, "Add new only"),
    h("option", { value: "OVERWRITE_IF_EXISTS" }, "Overwrite if exists"),
    h("option", { value: "REPLACE_ALL" }, "Replace all (revokes the others)"),
    h("option", { value: "ERROR_IF_EXISTS" }, "Error if exists"));
  const result = h("div", { class: "import-result" });
  return h("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    clear(result);
    if (!file.files[0]) return msg.error("Choose a file exported by quire first.");
    let keys;
    try { keys = JSON.parse(await file.files[0].text()); } catch { return msg.error("That file is not JSON."); }
    try {
      const d = await gql(`mutation ($i: ImportApiKeysInput!) { importApiKeys(input: $i) { imported skipped overwritten revoked } }`,
        { i: { keys, mode: mode.value } });
      const r = d.importApiKeys;
      append(result, [table(["Imported", "Overwritten", "Skipped", "Revoked"],
        [h("tr", {}, h("td", {}, r.imported), h("td", {}, r.overwritten), h("td", {}, r.skipped), h("td", {}, r.revoked))])]);
      msg.ok("Import done.");
      refresh();
    } catch (err) { msg.error(err); }
  } }, "Import ", file, mode, h("button", { type: "submit" }, "Import"), result);
}

async function loadAudit(box, msg, after, rows) {
  try {
    const d = await gql(`query ($a: String) { auditEvents(limit: 20, after: $a) { items { id action actorKeyId targetKeyId detail createdAt } pageInfo { hasNextPage endCursor } } }`, { a: after ?? null });
    const page = d.auditEvents;
    const all = (rows || []).concat(page.items);
    clear(box).append(table(["When", "Action", "Actor", "Target", "Detail"], all.map((e) =>
      h("tr", {}, h("td", {}, when(e.createdAt)), h("td", {}, e.action), h("td", {}, e.actorKeyId ?? "admin"),
        h("td", {}, e.targetKeyId ?? "—"), h("td", { class: "detail" }, brief(e.detail, 120))))));
    if (page.pageInfo.hasNextPage) box.append(h("button", { type: "button", onclick: () => loadAudit(box, msg, page.pageInfo.endCursor, all) }, "More"));
  } catch (e) { msg.error(e); }
}
