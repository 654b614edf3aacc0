// Usage (SPEC §10): requests per day per key over the last 30 days, as a
// stacked bar chart in inline SVG (built with createElementNS, text only).
import { h, clear, messageLine, card, table } from "./dom.js";
import { gql } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
const DAYS = 30;

export function allowed(ctx) {
  return ctx.features.has("keyUsage") && ctx.can("analytics:read");
}

function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export async function render(root) {
  const msg = messageLine();
  const box = h("div", { id: "usage" });
  root.append(msg.el, card(`Requests per day, last ${DAYS} days`, box,
    h("button", { type: "button", id: "usage-refresh", onclick: () => load(box, msg) }, "Refresh")));
  await load(box, msg);
}

async function load(box, msg) {
  const end = new Date();
  end.setUTCHours(0, 0, 0, 0);
  end.setUTCDate(end.getUTCDate() + 1);
  const start = new Date(end.getTime() - DAYS * 86400000);
  try {
    const d = await gql(`query ($f: DateTime!, $t: DateTime!) { keyUsage(from: $f, to: $t, granularity: DAY) {
        start keyId keyName maskedKey requests rateLimited errors } }`, { f: start.toISOString(), t: end.toISOString() });
    clear(box).append(chart(d.keyUsage, start), totals(d.keyUsage));
  } catch (e) { msg.error(e); }
}

export function chart(buckets, start) {
  const keys = [...new Map(buckets.map((b) => [b.keyId, b])).values()];
  const color = new Map(keys.map((k, i) => [k.keyId, COLORS[i % COLORS.length]]));
  const perDay = Array.from({ length: DAYS }, () => []);
  for (const b of buckets) {
    const i = Math.floor((new Date(b.start) - start) / 86400000);
    if (i >= 0 && i < DAYS) perDay[i].push(b);
  }
  const max = Math.max(1, ...perDay.map((d) => d.reduce((n, b) => n + b.requests, 0)));
  const W = 720, H = 220, L = 48, B = 24, bw = (W - L) / DAYS;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H + B}`, class: "chart", role: "img", "aria-label": "requests per day per key" });
  for (const f of max >= 2 ? [0, 0.5, 1] : [0, 1]) {
    const y = H - f * (H - 10);
    svg.append(s("line", { x1: L, x2: W, y1: y, y2: y, class: "grid" }), s("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "axis" }, String(Math.round(f * max))));
  }
  perDay.forEach((day, i) => {
    let y = H;
    for (const b of day) {
      const hgt = (b.requests / max) * (H - 10);
      y -= hgt;
      const r = s("rect", { x: L + i * bw + 1, y, width: Math.max(1, bw - 2), height: hgt, fill: color.get(b.keyId) });
      r.append(s("title", {}, `${b.start.slice(0, 10)} ${b.keyName}: ${b.requests} requests, ${b.rateLimited} rate-limited, ${b.errors} errors`));
      svg.append(r);
    }
    if (i % 5 === 0) {
      const day = new Date(start.getTime() + i * 86400000).toISOString().slice(5, 10);
      svg.append(s("text", { x: L + i * bw, y: H + 16, class: "axis" }, day));
    }
  });
  const legend = h("ul", { class: "legend" }, keys.map((k) =>
    h("li", {}, h("span", { class: "swatch", "data-color": color.get(k.keyId) }), `${k.keyName} `, h("code", {}, k.maskedKey))));
  for (const sw of legend.querySelectorAll(".swatch")) sw.style.background = sw.dataset.color;
  return h("div", {}, svg, keys.length ? legend : h("p", { class: "hint" }, "No requests in this period."));
}

function totals(buckets) {
  const by = new Map();
  for (const b of buckets) {
    const t = by.get(b.keyId) || { name: b.keyName, masked: b.maskedKey, requests: 0, rateLimited: 0, errors: 0 };
    t.requests += b.requests; t.rateLimited += b.rateLimited; t.errors += b.errors;
    by.set(b.keyId, t);
  }
  return table(["Key", "Masked", "Requests", "Rate-limited", "Errors"], [...by.values()].map((t) =>
    h("tr", {}, h("td", {}, t.name), h("td", {}, h("code", {}, t.masked)), h("td", { class: "num" }, t.requests),
      h("td", { class: "num" }, t.rateLimited), h("td", { class: "num" }, t.errors))));
}
