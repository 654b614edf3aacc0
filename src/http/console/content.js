// Content (SPEC §5, §8, §11, §12): models and their fields, a model's records
// with status, a form built from the fields, publish/unpublish/delete, search
// and versions (each when the server has them and the key may).
import { h, clear, append, when, brief, messageLine, card, table, confirmButton, field } from "./dom.js";
import { gql } from "./api.js";

const RECORD = "id modelKey data status version createdAt updatedAt publishedAt";

export function allowed(ctx) {
  return ctx.can("schemas:read") || ctx.can("records:read");
}

export async function render(root, ctx) {
  const msg = messageLine();
  root.append(msg.el);
  let models = [];
  if (ctx.can("schemas:read")) {
    try {
      models = (await gql(`{ models { key name createdAt fields { name type required unique referenceModelKey } } }`)).models;
    } catch (e) { msg.error(e); }
  }
  const pane = h("div", { id: "model-pane" });
  const list = h("ul", { class: "models" }, models.map((m) =>
    h("li", {}, h("button", { type: "button", class: "link", "data-model": m.key, onclick: () => openModel(pane, ctx, m, msg) }, `${m.name} (${m.key})`))));
  const side = card("Models", models.length ? list : h("p", {}, ctx.can("schemas:read") ? "No models yet." : "This key may not read models (schemas:read)."));
  if (!ctx.can("schemas:read") && ctx.can("records:read")) {
    const key = h("input", { type: "text", placeholder: "model key", "aria-label": "model key" });
    side.append(h("form", { onsubmit: (e) => { e.preventDefault(); openModel(pane, ctx, { key: key.value, name: key.value, fields: [] }, msg); } },
      key, h("button", { type: "submit" }, "Open")));
  }
  root.append(h("div", { class: "split" }, side, pane));
  if (models.length) openModel(pane, ctx, models[0], msg);
}

async function openModel(pane, ctx, model, msg) {
  msg.clear();
  for (const b of document.querySelectorAll("button[data-model]")) b.classList.toggle("active", b.dataset.model === model.key);
  clear(pane);
  if (model.fields.length) {
    pane.append(card(`${model.name}: fields`, table(["Field", "Type", "Required", "Unique", "References"],
      model.fields.map((f) => h("tr", {}, h("td", {}, f.name), h("td", {}, f.type), h("td", {}, f.required ? "yes" : ""),
        h("td", {}, f.unique ? "yes" : ""), h("td", {}, f.referenceModelKey ?? ""))))));
  }
  const editor = h("div", { id: "record-editor" });
  const records = h("div", { id: "records" });
  const refresh = () => loadRecords(records, ctx, model, msg, editor, refresh);
  if (ctx.can("records:write") && model.fields.length) {
    pane.append(h("p", {}, h("button", { type: "button", id: "new-record", onclick: () => showEditor(editor, ctx, model, null, msg, refresh) }, "New record")));
  }
  pane.append(editor);
  if (ctx.features.has("search") && ctx.can("search:read") && ctx.can("records:read")) pane.append(searchBox(ctx, model, msg));
  if (ctx.can("records:read")) {
    pane.append(card(`${model.name}: records${ctx.preview ? " (drafts included)" : " (published view)"}`, records));
    await refresh();
  }
}

async function loadRecords(box, ctx, model, msg, editor, refresh, after, previous) {
  try {
    const d = await gql(`query ($m: String!, $a: String, $p: Boolean) { records(modelKey: $m, limit: 20, after: $a, preview: $p,
        orderBy: [{ field: "updatedAt", direction: DESC }]) { items { ${RECORD} } pageInfo { hasNextPage endCursor } totalCount } }`,
      { m: model.key, a: after ?? null, p: ctx.preview });
    const page = d.records;
    const items = (previous || []).concat(page.items);
    const shown = model.fields.slice(0, 3).map((f) => f.name);
    const rows = items.map((r) => recordRow(r, shown, ctx, model, msg, editor, refresh));
    clear(box).append(h("p", { class: "hint" }, `${page.totalCount} records`),
      table(["Id", "Status", "Version", ...shown, "Updated", ""], rows, { class: "records" }));
    if (page.pageInfo.hasNextPage) box.append(h("button", { type: "button", onclick: () => loadRecords(box, ctx, model, msg, editor, refresh, page.pageInfo.endCursor, items) }, "More"));
  } catch (e) { msg.error(e); }
}

function recordRow(r, shown, ctx, model, msg, editor, refresh) {
  const act = (label, mutation) => h("button", { type: "button", onclick: async () => {
    try { await gql(`mutation ($id: ID!) { ${mutation}(id: $id) { id status } }`, { id: r.id }); msg.ok(`${label}: ${r.id}`); refresh(); }
    catch (e) { msg.error(e); }
  } }, label);
  const actions = h("td", { class: "actions" });
  if (ctx.can("records:write") && model.fields.length) actions.append(h("button", { type: "button", onclick: () => showEditor(editor, ctx, model, r, msg, refresh) }, "Edit"));
  if (ctx.can("records:publish")) {
    if (r.status !== "PUBLISHED") actions.append(act("Publish", "publishRecord"));
    if (r.status !== "DRAFT") actions.append(act("Unpublish", "unpublishRecord"));
  }
  if (ctx.features.has("recordVersions")) actions.append(h("button", { type: "button", onclick: () => showVersions(editor, ctx, r, msg, refresh) }, "Versions"));
  if (ctx.can("records:delete")) {
    actions.append(confirmButton("Delete", "Delete this record?", async () => {
      try { await gql(`mutation ($id: ID!) { deleteRecord(id: $id) }`, { id: r.id }); msg.ok(`Deleted ${r.id}.`); refresh(); }
      catch (e) { msg.error(e); }
    }));
  }
  return h("tr", { "data-record-id": r.id },
    h("td", {}, h("code", {}, r.id.slice(0, 8))),
    h("td", { class: `status ${r.status.toLowerCase()}` }, r.status),
    h("td", { class: "num" }, r.version),
    shown.map((f) => h("td", { class: "value" }, brief(r.data?.[f]))),
    h("td", {}, when(r.updatedAt)),
    actions);
}

/** One input per field, by type; read() answers the data object or throws. */
function fieldControls(fields, data) {
  const controls = fields.map((f) => {
    const v = data?.[f.name];
    let input;
    switch (f.type) {
      case "TEXT": input = h("textarea", { rows: 4, value: v ?? "" }); break;
      case "JSON": input = h("textarea", { rows: 4, class: "mono", value: v === undefined ? "" : JSON.stringify(v, null, 2) }); break;
      case "BOOLEAN": input = h("input", { type: "checkbox", checked: v === true }); break;
      case "INTEGER": input = h("input", { type: "number", step: 1, value: v ?? "" }); break;
      case "NUMBER": input = h("input", { type: "number", step: "any", value: v ?? "" }); break;
      case "DATETIME": input = h("input", { type: "text", placeholder: "2026-01-31T12:00:00.000Z", value: v ?? "" }); break;
      default: input = h("input", { type: "text", value: v ?? "", placeholder: f.type === "REFERENCE" ? `id of a ${f.referenceModelKey} record` : f.type === "FILE" ? "file id" : "" });
    }
    input.name = f.name;
    const label = `${f.name}${f.required ? " *" : ""} (${f.type.toLowerCase()})`;
    return { f, input, el: field(label, input) };
  });
  function read() {
    const out = {};
    for (const { f, input } of controls) {
      if (f.type === "BOOLEAN") { out[f.name] = input.checked; continue; }
      const raw = input.value;
      if (raw === "") continue;
      if (f.type === "INTEGER" || f.type === "NUMBER") out[f.name] = Number(raw);
      else if (f.type === "JSON") {
        try { out[f.name] = JSON.parse(raw); } catch { throw new Error(`${f.name}: not valid JSON`); }
      } else out[f.name] = raw;
    }
    return out;
  }
  return { els: controls.map((c) => c.el), read };
}

function showEditor(box, ctx, model, record, msg, refresh) {
  const { els, read } = fieldControls(model.fields, record?.data);
  const form = h("form", { class: "record-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const data = read();
      if (record) {
        await gql(`mutation ($id: ID!, $d: JSON!, $v: Int) { updateRecord(id: $id, data: $d, expectedVersion: $v) { id } }`,
          { id: record.id, d: data, v: record.version });
        msg.ok(`Saved ${record.id}.`);
      } else {
        const d = await gql(`mutation ($m: String!, $d: JSON!) { createRecord(modelKey: $m, data: $d) { id } }`, { m: model.key, d: data });
        msg.ok(`Created ${d.createRecord.id} (a draft until published).`);
        if (!ctx.preview && ctx.can("records:publish")) {
          // This key cannot list drafts (SPEC §2): offer to publish the new one here.
          const id = d.createRecord.id;
          clear(box).append(card("Draft created", h("p", {}, `Record ${id} is a draft, which this key cannot list. `,
            h("button", { type: "button", onclick: async () => {
              try { await gql(`mutation ($id: ID!) { publishRecord(id: $id) { id } }`, { id }); msg.ok(`Published ${id}.`); clear(box); refresh(); }
              catch (err) { msg.error(err); }
            } }, "Publish it now"))));
          return refresh();
        }
      }
      clear(box);
      refresh();
    } catch (err) { msg.error(err); }
  } }, els, h("div", { class: "row" }, h("button", { type: "submit" }, record ? "Save" : "Create"),
    h("button", { type: "button", onclick: () => clear(box) }, "Cancel")));
  clear(box).append(card(record ? `Edit ${record.id} (version ${record.version})` : `New ${model.name} record`, form));
}

async function showVersions(box, ctx, record, msg, refresh) {
  try {
    const d = await gql(`query ($id: ID!, $p: Boolean) { recordVersions(id: $id, preview: $p, limit: 20) { items { version data published createdAt } } }`,
      { id: record.id, p: ctx.preview });
    const rows = d.recordVersions.items.map((v) => h("tr", {},
      h("td", { class: "num" }, v.version), h("td", {}, v.published ? "published" : "draft"), h("td", {}, when(v.createdAt)),
      h("td", { class: "value" }, brief(v.data, 160)),
      h("td", {}, ctx.can("records:write") ? h("button", { type: "button", onclick: async () => {
        try {
          await gql(`mutation ($id: ID!, $v: Int!) { restoreRecordVersion(id: $id, version: $v) { id version } }`, { id: record.id, v: v.version });
          msg.ok(`Version ${v.version} restored into the draft.`);
          clear(box);
          refresh();
        } catch (e) { msg.error(e); }
      } }, "Restore") : null)));
    clear(box).append(card(`Versions of ${record.id}`, table(["Version", "Kind", "When", "Data", ""], rows),
      h("button", { type: "button", onclick: () => clear(box) }, "Close")));
  } catch (e) { msg.error(e); }
}

/** A snippet with <mark>…</mark> around matches and the rest HTML-escaped
 * (SPEC §8), turned into text nodes and <mark> elements: never parsed as HTML. */
export function snippetNodes(snippet) {
  const unescape = (s) => s.replace(/&(lt|gt|quot|#39|#x27|amp);/g, (_, e) =>
    ({ lt: "<", gt: ">", quot: '"', "#39": "'", "#x27": "'", amp: "&" })[e]);
  const out = [];
  const parts = String(snippet).split(/(<mark>|<\/mark>)/);
  let marked = false;
  for (const p of parts) {
    if (p === "<mark>") { marked = true; continue; }
    if (p === "</mark>") { marked = false; continue; }
    if (p) out.push(marked ? h("mark", {}, unescape(p)) : unescape(p));
  }
  return out;
}

function searchBox(ctx, model, msg) {
  const q = h("input", { type: "search", placeholder: `search ${model.name}`, "aria-label": "search", maxlength: 256 });
  const results = h("div", { class: "search-results" });
  const form = h("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    if (!q.value.trim()) return clear(results);
    try {
      const d = await gql(`query ($q: String!, $m: [String!], $p: Boolean) { search(query: $q, modelKeys: $m, preview: $p, limit: 20) {
          items { score record { id status } highlights { field snippet } } } }`, { q: q.value, m: [model.key], p: ctx.preview });
      const items = d.search.items;
      clear(results).append(items.length ? h("ul", {}, items.map((hit) => h("li", {},
        h("code", {}, hit.record.id.slice(0, 8)), " ", h("span", { class: `status ${hit.record.status.toLowerCase()}` }, hit.record.status), " ",
        hit.highlights.map((hl) => h("span", { class: "hl" }, h("b", {}, hl.field, ": "), snippetNodes(hl.snippet)))))) : h("p", {}, "No match."));
    } catch (err) { msg.error(err); }
  } }, q, h("button", { type: "submit" }, "Search"));
  return card("Search", form, results);
}
