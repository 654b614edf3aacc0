// Webhooks (SPEC §9): list, create (secret shown once), delete, deliveries
// with their status.
import { h, clear, when, messageLine, card, table, confirmButton, secretOnce, field } from "./dom.js";
import { gql } from "./api.js";

export function allowed(ctx) {
  return ctx.can("extensions:manage");
}

export async function render(root, ctx) {
  const msg = messageLine();
  const once = h("div");
  const list = h("div", { id: "webhooks" });
  const deliveries = h("div", { id: "deliveries" });
  const refresh = () => load(list, deliveries, msg, refresh);
  const url = h("input", { type: "url", required: true, placeholder: "https://example.com/hooks/quire", size: 40 });
  const events = h("input", { type: "text", value: "record.*", required: true, size: 30 });
  const models = h("input", { type: "text", placeholder: "all models", size: 20 });
  const drafts = h("input", { type: "checkbox" });
  const list_ = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
  const form = h("form", { id: "create-webhook", onsubmit: async (e) => {
    e.preventDefault();
    const input = { url: url.value, events: list_(events.value), includeDrafts: drafts.checked };
    if (models.value.trim()) input.modelKeys = list_(models.value);
    try {
      const d = await gql(`mutation ($i: WebhookInput!) { createWebhook(input: $i) { secret webhook { id url } } }`, { i: input });
      clear(once).append(secretOnce(`Webhook for ${d.createWebhook.webhook.url} created`, d.createWebhook.secret,
        "Its signing secret will not be shown again (rotate it to get a new one)."));
      form.reset();
      events.value = "record.*";
      msg.clear();
      refresh();
    } catch (err) { msg.error(err); }
  } }, h("div", { class: "row" }, field("URL", url), field("Events (comma-separated)", events), field("Models", models),
    h("label", { class: "inline" }, drafts, " include drafts (test keys)")), h("button", { type: "submit" }, "Create webhook"));
  root.append(msg.el, once, card("Create a webhook", form), card("Webhooks", list), deliveries);
  await refresh();
}

async function load(box, deliveries, msg, refresh) {
  try {
    const d = await gql(`{ webhooks { id url events modelKeys includeDrafts enabled createdAt } }`);
    clear(box).append(table(["URL", "Events", "Models", "Drafts", "Enabled", "Created", ""], d.webhooks.map((w) =>
      h("tr", { "data-webhook-id": w.id }, h("td", {}, w.url), h("td", {}, w.events.join(", ")), h("td", {}, (w.modelKeys || []).join(", ") || "all"),
        h("td", {}, w.includeDrafts ? "yes" : ""), h("td", {}, w.enabled ? "yes" : "no"), h("td", {}, when(w.createdAt)),
        h("td", { class: "actions" },
          h("button", { type: "button", onclick: () => showDeliveries(deliveries, w, msg) }, "Deliveries"),
          confirmButton("Delete", "Delete this webhook and its deliveries?", async () => {
            try { await gql(`mutation ($id: ID!) { deleteWebhook(id: $id) }`, { id: w.id }); clear(deliveries); refresh(); } catch (e) { msg.error(e); }
          }))))));
  } catch (e) { msg.error(e); }
}

async function showDeliveries(box, w, msg) {
  try {
    const d = await gql(`query ($id: ID!) { webhookDeliveries(webhookId: $id, limit: 50) { items {
        id eventId attempt status responseStatus error createdAt nextAttemptAt } } }`, { id: w.id });
    clear(box).append(card(`Deliveries to ${w.url}`, table(["Event", "Attempts", "Status", "HTTP", "Error", "Created", "Next attempt", ""],
      d.webhookDeliveries.items.map((x) => h("tr", {}, h("td", {}, h("code", {}, x.eventId)), h("td", { class: "num" }, x.attempt),
        h("td", { class: `status ${x.status.toLowerCase()}` }, x.status), h("td", {}, x.responseStatus ?? ""), h("td", {}, x.error ?? ""),
        h("td", {}, when(x.createdAt)), h("td", {}, when(x.nextAttemptAt)),
        h("td", {}, x.status === "FAILED" ? h("button", { type: "button", onclick: async () => {
          try { await gql(`mutation ($id: ID!) { redeliverWebhook(deliveryId: $id) { id } }`, { id: x.id }); showDeliveries(box, w, msg); } catch (e) { msg.error(e); }
        } }, "Redeliver") : null))))));
  } catch (e) { msg.error(e); }
}
