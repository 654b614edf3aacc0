// Files (SPEC §7): list with thumbnails through the image variants, upload
// with progress, publish/unpublish, delete. Shown only when the server has
// the `files` field and the key holds files:read.
import { h, clear, when, messageLine, card, table, confirmButton } from "./dom.js";
import { gql, upload } from "./api.js";

const IMAGES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const THUMB = "w=200&h=200&fit=cover";

export function allowed(ctx) {
  return ctx.features.has("files") && ctx.can("files:read");
}

/** A same-origin thumbnail URL: the public path of a published file, else
 * the path of its signed preview URL (whatever host quire put in it). */
export function thumbnail(f) {
  if (!IMAGES.includes(f.contentType)) return null;
  if (f.status === "PUBLISHED") return `/files/${encodeURIComponent(f.id)}/${encodeURIComponent(f.filename)}?${THUMB}`;
  if (f.previewUrl) {
    const u = new URL(f.previewUrl, location.origin);
    return `${u.pathname}${u.search}${u.search ? "&" : "?"}${THUMB}`;
  }
  return null;
}

export async function render(root, ctx) {
  const msg = messageLine();
  const list = h("div", { id: "files" });
  root.append(msg.el);
  const refresh = () => load(list, ctx, msg, refresh);
  if (ctx.can("files:write")) {
    const input = h("input", { type: "file", multiple: true, id: "file-input", "aria-label": "files to upload" });
    const progress = h("progress", { max: 1, value: 0, hidden: true });
    const status = h("span", { class: "hint" });
    const form = h("form", { class: "row", onsubmit: async (e) => {
      e.preventDefault();
      for (const file of input.files) {
        progress.hidden = false;
        progress.value = 0;
        status.textContent = `Uploading ${file.name}…`;
        try {
          const f = await upload(file, (p) => { progress.value = p; });
          status.textContent = `Uploaded ${f.filename} (${f.size} bytes).`;
        } catch (err) { msg.error(err); status.textContent = ""; }
      }
      progress.hidden = true;
      input.value = "";
      refresh();
    } }, input, h("button", { type: "submit" }, "Upload"), progress, status);
    root.append(card("Upload", form));
  }
  root.append(card(`Files${ctx.preview ? " (drafts included)" : " (published)"}`, list));
  await refresh();
}

async function load(box, ctx, msg, refresh, after, previous) {
  try {
    const preview = ctx.preview ? "previewUrl(expiresInSeconds: 3600)" : "";
    const d = await gql(`query ($p: Boolean, $a: String) { files(limit: 50, preview: $p, after: $a) { totalCount items {
        id filename contentType size width height alt status url ${preview} createdAt publishedAt } pageInfo { hasNextPage endCursor } } }`,
      { p: ctx.preview, a: after ?? null });
    const items = (previous || []).concat(d.files.items);
    const rows = items.map((f) => {
      const src = thumbnail(f);
      const actions = h("td", { class: "actions" });
      const act = (label, m) => h("button", { type: "button", onclick: async () => {
        try { await gql(`mutation ($id: ID!) { ${m}(id: $id) { id status } }`, { id: f.id }); refresh(); } catch (e) { msg.error(e); }
      } }, label);
      if (ctx.can("files:write")) actions.append(f.status === "PUBLISHED" ? act("Unpublish", "unpublishFile") : act("Publish", "publishFile"));
      if (ctx.can("files:delete")) actions.append(confirmButton("Delete", `Delete ${f.filename}?`, async () => {
        try { await gql(`mutation ($id: ID!) { deleteFile(id: $id) }`, { id: f.id }); refresh(); } catch (e) { msg.error(e); }
      }));
      return h("tr", { "data-file-id": f.id },
        h("td", { class: "thumb" }, src ? h("img", { src, alt: f.alt || f.filename, width: 100, height: 100, loading: "lazy" }) : "—"),
        h("td", {}, f.filename), h("td", {}, f.contentType),
        h("td", { class: "num" }, f.size.toLocaleString()),
        h("td", {}, f.width ? `${f.width}×${f.height}` : ""),
        h("td", { class: `status ${f.status.toLowerCase()}` }, f.status),
        h("td", {}, when(f.createdAt)), actions);
    });
    clear(box).append(h("p", { class: "hint" }, `${d.files.totalCount} files`),
      table(["", "Name", "Type", "Bytes", "Size", "Status", "Uploaded", ""], rows, { class: "files" }));
    if (d.files.pageInfo.hasNextPage) {
      box.append(h("button", { type: "button", onclick: () => load(box, ctx, msg, refresh, d.files.pageInfo.endCursor, items) }, "More"));
    }
  } catch (e) { msg.error(e); }
}
