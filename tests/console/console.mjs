// The web console (/console) and the GraphiQL page, end to end in headless
// Debian chromium (issue 19, SPEC §12). Started by run.sh with QUIRE_BIN and
// CHROMIUM_PATH. Starts its own quire (loopback port, own SQLite file and
// files directory), seeds a model with node's fetch, then drives the pages
// as a person would, recording every request the browser makes.
//
// Each check prints one line; failed checks leave a screenshot in artifacts/.
// The last line is "N passed, N failed".
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

const BIN = process.env.QUIRE_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SHOT = process.env.CONSOLE_SCREENSHOT || "";
const HERE = path.dirname(new URL(import.meta.url).pathname);
const ARTIFACTS = path.join(HERE, "artifacts");
const XSS_KEY = '<img src=x onerror="window.__xss=1">';
const XSS_RECORD = "<img src=x onerror=window.__xss=2><script>window.__xss=3</script>";

let passed = 0;
const failed = [];
let page = null;

async function check(ok, what) {
  console.log(`  ${ok ? "ok  " : "FAIL"} console: ${what}`);
  if (ok) { passed++; return; }
  failed.push(what);
  if (page) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const name = `${String(failed.length).padStart(2, "0")}-${what.replace(/[^a-z0-9]+/gi, "-").slice(0, 60)}.png`;
    await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true }).catch(() => {});
  }
}

/** Runs a step; an exception fails it as one check. */
async function step(name, f) {
  try { await f(); } catch (e) { await check(false, `${name}: ${String(e?.message ?? e).split("\n")[0]}`); }
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function startQuire() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "quire-console-"));
  const port = await freePort();
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("QUIRE_")));
  Object.assign(env, {
    QUIRE_LISTEN: `127.0.0.1:${port}`,
    QUIRE_DATABASE_URL: `sqlite://${dir}/quire.db?mode=rwc`,
    QUIRE_FILES_DIR: `${dir}/files`,
    QUIRE_WEBHOOK_ALLOW_PRIVATE: "true",
    QUIRE_USAGE_FLUSH_SECONDS: "1",
    RUST_LOG: env.RUST_LOG || "warn",
  });
  const log = fs.openSync(path.join(dir, "quire.log"), "a");
  const proc = spawn(BIN, ["serve"], { cwd: dir, env, stdio: ["ignore", "pipe", log] });
  let out = "";
  proc.stdout.on("data", (c) => { out += c; });
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + 30000;
  while (Date.now() < end) {
    if (proc.exitCode !== null) throw new Error(`quire exited ${proc.exitCode}; log in ${dir}`);
    try { if ((await fetch(`${url}/healthz`)).ok && /sk_test_[0-9A-Za-z]{38}/.test(out)) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  const root = /\b(sk_test_[0-9A-Za-z]{38})\b/.exec(out)?.[1];
  if (!root) throw new Error(`no bootstrap key; log in ${dir}`);
  return { proc, url, root, dir };
}

async function gql(url, key, query, variables) {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body: JSON.stringify({ query, variables: variables || {} }),
  });
  return { status: res.status, body: await res.json() };
}

/** A small valid PNG (w×h, a colour gradient) made here, no file needed. */
function png(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const o = y * (w * 3 + 1) + 1 + x * 3;
    raw[o] = (x * 255) / w; raw[o + 1] = (y * 255) / h; raw[o + 2] = 160;
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
const q = await startQuire();
console.log(`  console: quire at ${q.url} (${q.dir})`);
let browser;
try {
  // Seed: a model with a STRING, TEXT and INTEGER field; a public key.
  const m = await gql(q.url, q.root, `mutation { createModel(input: {key: "article", name: "Article", fields: [
    {name: "title", type: STRING, required: true}, {name: "body", type: TEXT}, {name: "views", type: INTEGER}]}) { key } }`);
  if (m.body.errors) throw new Error(`createModel: ${JSON.stringify(m.body.errors)}`);
  const pk = await gql(q.url, q.root, `mutation { createApiKey(input: {name: "site", type: PUBLIC, mode: TEST,
    scopes: ["records:read"]}) { key } }`);
  const publicKey = pk.body.data.createApiKey.key;

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30000 });
  console.log(`  console: chromium ${browser.version()}`);
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: q.url });
  const requests = [];
  context.on("request", (r) => requests.push(r.url()));
  const refused = [];
  context.on("response", (r) => { if (r.status() >= 400) refused.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`); });
  page = await context.newPage();
  const problems = [];
  page.on("console", (msg) => {
    // Failed loads are checked from the responses themselves (below).
    if ((msg.type() === "error" && !/^Failed to load resource/.test(msg.text())) || /Content Security Policy/i.test(msg.text())) problems.push(msg.text());
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  const xss = () => page.evaluate(() => window.__xss);

  await step("the page and its headers", async () => {
    const res = await page.goto(`${q.url}/console`);
    const h = res.headers();
    await check(res.status() === 200, `GET /console: ${res.status()}`);
    await check(/script-src 'self'/.test(h["content-security-policy"] || "") && /frame-ancestors 'none'/.test(h["content-security-policy"] || ""),
      `Content-Security-Policy: ${h["content-security-policy"]}`);
    await check(h["x-content-type-options"] === "nosniff" && h["referrer-policy"] === "no-referrer", "nosniff and no-referrer");
    await page.waitForSelector("#login:not([hidden])", { timeout: 10000 });
    await check(true, "asks for a key first");
  });

  await step("a wrong key", async () => {
    await page.fill("#login-key", "sk_test_notakey");
    await page.click("#login-form button[type=submit]");
    await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("refused"), null, { timeout: 10000 });
    await check(await page.evaluate(() => sessionStorage.getItem("quire.apiKey")) === null, "a refused key is not kept");
  });

  await step("paste a key", async () => {
    await page.fill("#login-key", q.root);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#who .keyname", { timeout: 10000 });
    await check((await page.textContent("#who")).includes("bootstrap"), "pasted key: the header names the key bootstrap");
    const stored = await page.evaluate(() => ({ s: sessionStorage.getItem("quire.apiKey"), l: localStorage.length, c: document.cookie }));
    await check(stored.s === q.root && stored.l === 0 && stored.c === "", "the key is in sessionStorage only (no localStorage, no cookie)");
    const parts = await page.$$eval("#nav a", (as) => as.map((a) => a.dataset.part));
    await check(["keys", "content", "webhooks"].every((p) => parts.includes(p)), `parts for an all-scope key: ${parts.join(", ")}`);
    await page.waitForSelector("table.keys", { timeout: 10000 });
  });

  let created = null;
  await step("create a key", async () => {
    await page.fill("#create-key input[name=name]", "ci-key");
    await page.check('#create-key input[value="records:read"]');
    await page.click("#create-key button[type=submit]");
    await page.waitForSelector(".once .secret", { timeout: 10000 });
    created = await page.inputValue(".once .secret");
    await check(/^sk_test_[0-9A-Za-z]{38}$/.test(created), "created key: the plaintext is shown");
    await check((await page.textContent(".once")).includes("will not be shown again"), "…with a line saying it will not be shown again");
    await page.click(".once button.copy");
    const clip = await page.evaluate(() => navigator.clipboard.readText()).catch(() => null);
    await check(clip === created, "the copy button puts the key on the clipboard");
    const works = await gql(q.url, created, "{ viewer { key { name } } }");
    await check(works.status === 200 && works.body.data?.viewer.key.name === "ci-key", "the shown key works");
    await page.click(".once button:has-text('Done')");
    await page.waitForSelector('table.keys tr:has-text("ci-key")', { timeout: 10000 });
    const html = await page.content();
    await check(!html.includes(created) && !(await page.evaluate((k) => document.body.innerText.includes(k), created)),
      "after Done the plaintext is nowhere in the page (listed masked)");
  });

  await step("rotate a key", async () => {
    const row = page.locator('table.keys tr:has-text("ci-key")');
    await row.locator("button:has-text('Rotate')").click();
    await row.locator('input[aria-label="grace seconds"]').fill("0");
    await row.locator("button[data-rotate=yes]").click();
    await page.waitForSelector(".once .secret", { timeout: 10000 });
    const rotated = await page.inputValue(".once .secret");
    const old = await gql(q.url, created, "{ viewer { key { name } } }");
    const now = await gql(q.url, rotated, "{ viewer { key { name } } }");
    await check(rotated !== created && old.status === 401 && now.body.data?.viewer.key.name === "ci-key",
      `rotated with no grace: the new secret shown once works, the old one gets ${old.status}`);
    created = rotated;
    await page.click(".once button:has-text('Done')");
  });

  await step("revoke a key", async () => {
    const row = page.locator('table.keys tr:has-text("ci-key")');
    await row.locator("button:has-text('Revoke')").click();
    await row.locator("button[data-confirm=yes]").click();
    await page.waitForSelector('table.keys tr:has-text("ci-key")', { state: "detached", timeout: 10000 });
    const after = await gql(q.url, created, "{ viewer { key { name } } }");
    await check(after.status === 401, `revoked after confirmation: the key now gets ${after.status}`);
  });

  await step("XSS in a key name", async () => {
    await page.fill("#create-key input[name=name]", XSS_KEY);
    await page.check('#create-key input[value="records:read"]');
    await page.click("#create-key button[type=submit]");
    await page.waitForSelector(".once .secret", { timeout: 10000 });
    await page.click(".once button:has-text('Done')");
    await page.waitForFunction((n) => [...document.querySelectorAll("table.keys td.name")].some((td) => td.textContent.startsWith(n)), XSS_KEY, { timeout: 10000 });
    const imgs = await page.$$eval("table.keys img, .once img", (x) => x.length);
    await check(imgs === 0 && (await xss()) === undefined, "a key named <img onerror> shows as text and runs nothing");
  });

  await step("import and export", async () => {
    const download = page.waitForEvent("download", { timeout: 10000 });
    await page.click("#export-keys");
    const file = await (await download).path();
    const exported = JSON.parse(fs.readFileSync(file, "utf8"));
    await check(Array.isArray(exported.keys) && exported.keys.length >= 2 && !JSON.stringify(exported).includes(q.root),
      `export downloads a JSON file of ${exported.keys?.length} keys without plaintexts`);
    await page.setInputFiles('input[aria-label="exported keys file"]', { name: "keys.json", mimeType: "application/json", buffer: Buffer.from(JSON.stringify(exported)) });
    await page.selectOption('select[aria-label="import mode"]', "ADD_NEW_ONLY");
    await page.click(".import-result >> xpath=.. >> button[type=submit]");
    await page.waitForSelector(".import-result table", { timeout: 10000 });
    const cells = await page.$$eval(".import-result td", (tds) => tds.map((t) => t.textContent));
    await check(cells.length === 4 && cells[0] === "0" && Number(cells[2]) === exported.keys.length,
      `import ADD_NEW_ONLY of the same keys: imported/overwritten/skipped/revoked = ${cells.join("/")}`);
    const listed = await page.waitForFunction(() => ["KEY_REVOKED", "KEY_ROTATED", "KEYS_EXPORTED", "KEYS_IMPORTED"]
      .every((a) => document.getElementById("part").textContent.includes(a)), null, { timeout: 10000 }).then(() => true, () => false);
    await check(listed, "the audit log lists the rotation, revocation, export and import");
  });

  await step("create and publish a record", async () => {
    await page.click('#nav a[data-part="content"]');
    await page.waitForSelector("#new-record", { timeout: 10000 });
    await page.click("#new-record");
    await page.fill(".record-form input[name=title]", XSS_RECORD);
    await page.fill(".record-form textarea[name=body]", "Hello from the console");
    await page.fill(".record-form input[name=views]", "3");
    await page.click(".record-form button[type=submit]");
    const row = page.locator("table.records tbody tr").first();
    await row.locator("td.status").filter({ hasText: "DRAFT" }).waitFor({ timeout: 10000 });
    await check(true, "created a record: listed as DRAFT");
    const title = await row.locator("td.value").first().textContent();
    await check(title === XSS_RECORD && (await page.$$eval("table.records img, table.records script", (x) => x.length)) === 0 && (await xss()) === undefined,
      "a record holding <img onerror> and <script> shows as text and runs nothing");
    await row.locator("button:has-text('Publish')").click();
    await row.locator("td.status").filter({ hasText: "PUBLISHED" }).waitFor({ timeout: 10000 });
    const pub = await gql(q.url, publicKey, `{ records(modelKey: "article") { items { data status } } }`);
    await check(pub.body.data?.records.items.some((r) => r.data.title === XSS_RECORD && r.data.views === 3),
      "published: the public key reads it");
    await row.locator("button:has-text('Edit')").click();
    await page.fill(".record-form input[name=views]", "4");
    await page.click(".record-form button[type=submit]");
    await row.locator("td.status").filter({ hasText: "CHANGED" }).waitFor({ timeout: 10000 });
    await check(true, "edited through the generated form: CHANGED");
    await row.locator("button:has-text('Unpublish')").click();
    await row.locator("td.status").filter({ hasText: "DRAFT" }).waitFor({ timeout: 10000 });
    await check(true, "unpublished: DRAFT again");
    if (await row.locator("button:has-text('Versions')").count()) {
      await row.locator("button:has-text('Versions')").click();
      await page.waitForSelector("#record-editor table tbody tr", { timeout: 10000 });
      const n = await page.locator("#record-editor table tbody tr").count();
      await check(n >= 2, `versions: ${n} listed`);
      await page.locator("#record-editor tr:has-text('published') button:has-text('Restore')").first().click();
      await row.locator("td.value").nth(2).filter({ hasText: "3" }).waitFor({ timeout: 10000 });
      await check(true, "restored the published version into the draft (views 3 again)");
    } else {
      console.log("  skip console: versions (this server has no `recordVersions` field yet)");
    }
    if (await page.locator('input[type="search"]').count()) {
      await page.fill('input[type="search"]', "console");
      await page.click('input[type="search"] >> xpath=.. >> button[type=submit]');
      await page.waitForSelector(".search-results li, .search-results p", { timeout: 10000 });
      const marks = await page.$$eval(".search-results mark", (m) => m.map((x) => x.textContent));
      await check(marks.some((m) => /console/i.test(m)), `search: hits with highlighted words (${marks.join(", ")})`);
    } else {
      console.log("  skip console: search (this server has no `search` field yet)");
    }
  });

  const parts = await page.$$eval("#nav a", (as) => as.map((a) => a.dataset.part));
  if (parts.includes("files")) {
    await step("upload an image", async () => {
      await page.click('#nav a[data-part="files"]');
      await page.waitForSelector("#file-input", { timeout: 10000 });
      await page.setInputFiles("#file-input", { name: "gradient.png", mimeType: "image/png", buffer: png(320, 240) });
      await page.click("#file-input >> xpath=.. >> button[type=submit]");
      const row = page.locator('table.files tr:has-text("gradient.png")');
      await row.waitFor({ timeout: 15000 });
      const pub = row.locator("button:has-text('Publish')");
      if (await pub.count()) {
        // A draft's thumbnail goes through its signed preview URL.
        const draft = row.locator("td.thumb img");
        await page.waitForFunction((el) => el && el.complete && el.naturalWidth > 0, await draft.elementHandle(), { timeout: 10000 });
        await check((await draft.getAttribute("src")).includes("sig="), "a draft image's thumbnail loads through its signed preview URL");
        await pub.click();
      }
      await row.locator("td.status").filter({ hasText: "PUBLISHED" }).waitFor({ timeout: 10000 });
      const img = row.locator("td.thumb img");
      await page.waitForFunction((el) => el && el.complete && el.naturalWidth > 0, await img.elementHandle(), { timeout: 10000 });
      const size = await img.evaluate((el) => [el.naturalWidth, el.naturalHeight, el.getAttribute("src")]);
      await check(size[0] === 200 && size[1] === 200 && size[2].includes("fit=cover"), `uploaded image: its thumbnail loads (${size.join(" ")})`);
    });
  } else {
    console.log("  skip console: files part (this server has no `files` field yet)");
  }

  if (parts.includes("usage")) {
    await step("usage chart", async () => {
      await page.click('#nav a[data-part="usage"]');
      // Counts reach keyUsage within QUIRE_USAGE_FLUSH_SECONDS (1 s here).
      const end = Date.now() + 20000;
      while (!(await page.locator("svg.chart rect").count()) && Date.now() < end) {
        await page.waitForTimeout(1000);
        await page.click("#usage-refresh");
      }
      const bars = await page.locator("svg.chart rect").count();
      const legend = await page.$$eval(".legend li", (li) => li.map((x) => x.textContent));
      await check(bars >= 1 && legend.some((l) => l.startsWith("bootstrap")), `usage: a chart of requests per day per key (${bars} bars; ${legend.join(", ")})`);
    });
  } else {
    console.log("  skip console: usage part (this server has no `keyUsage` field yet)");
  }

  await step("webhooks", async () => {
    await page.click('#nav a[data-part="webhooks"]');
    await page.fill('#create-webhook input[type=url]', "http://127.0.0.1:9/hook");
    await page.click("#create-webhook button[type=submit]");
    await page.waitForSelector(".once .secret", { timeout: 10000 });
    const secret = await page.inputValue(".once .secret");
    await check(secret.startsWith("whsec_") && (await page.textContent(".once")).includes("will not be shown again"), "webhook created: its secret shown once");
    await page.click(".once button:has-text('Done')");
    await page.locator("#webhooks tr:has-text('127.0.0.1:9') button:has-text('Deliveries')").click();
    await page.waitForSelector("#deliveries table", { timeout: 10000 });
    await check(true, "the webhook's deliveries are listed");
  });

  if (SHOT) {
    await step("screenshot", async () => {
      await page.click('#nav a[data-part="keys"]');
      await page.waitForSelector("table.keys", { timeout: 10000 });
      await page.screenshot({ path: SHOT, type: "png" });
      console.log(`  console: screenshot saved to ${SHOT} (${fs.statSync(SHOT).size} bytes)`);
    });
  }

  await step("GraphiQL with the console's key", async () => {
    await page.click("#open-graphiql");
    await page.waitForSelector(".graphiql-container", { timeout: 20000 });
    await check(await page.locator("#intro").isHidden(), "GraphiQL opens from the console without the key screen");
    await page.click(".graphiql-execute-button");
    await page.waitForFunction(() => document.querySelector(".result-window")?.textContent.includes("bootstrap"), null, { timeout: 15000 });
    await check(true, "GraphiQL runs a query with the prefilled x-api-key");
    const stored = await page.evaluate((k) => ({
      local: Object.keys(localStorage),
      copies: Object.keys(sessionStorage).filter((n) => n !== "quire.apiKey" && sessionStorage.getItem(n).includes(k)),
    }), q.root);
    await check(stored.local.length === 0 && stored.copies.length === 0,
      `GraphiQL keeps its state in sessionStorage, without the key (localStorage: ${stored.local.join(", ") || "empty"}; copies: ${stored.copies.join(", ") || "none"})`);
    // Back to the console and into GraphiQL again: its restored tab state
    // holds no headers, and the key is prefilled again.
    await page.goto(`${q.url}/console`);
    await page.waitForSelector("#forget:not([hidden])", { timeout: 10000 });
    await page.click("#open-graphiql");
    await page.waitForSelector(".graphiql-container", { timeout: 20000 });
    await page.click(".graphiql-execute-button");
    await page.waitForFunction(() => document.querySelector(".result-window")?.textContent.includes("bootstrap"), null, { timeout: 15000 });
    await check(true, "GraphiQL opened a second time still runs with the console's key");
    await page.goto(`${q.url}/console`);
    await page.waitForSelector("#forget:not([hidden])", { timeout: 10000 });
  });

  await step("a public key sees no key management", async () => {
    await page.click("#forget");
    await page.waitForSelector("#login:not([hidden])", { timeout: 10000 });
    await check(await page.evaluate(() => sessionStorage.length) === 0, "forget key: the key (and GraphiQL's tab state) is gone from sessionStorage");
    await page.fill("#login-key", publicKey);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#who .keyname", { timeout: 10000 });
    await page.waitForSelector("#part > *", { timeout: 10000 });
    const seen = await page.$$eval("#nav a", (as) => as.map((a) => a.dataset.part));
    const keyUi = await page.$$eval("#create-key, table.keys, #export-keys", (x) => x.length);
    await check(!seen.includes("keys") && !seen.includes("webhooks") && keyUi === 0, `public key: parts ${seen.join(", ") || "none"}, no key management`);
  });

  await step("GraphiQL without a key", async () => {
    await page.evaluate(() => sessionStorage.clear());
    const res = await page.goto(`${q.url}/graphql`);
    await check(/script-src 'self'/.test(res.headers()["content-security-policy"] || ""), "GraphiQL page carries the CSP");
    await page.waitForSelector("#intro:not([hidden])", { timeout: 10000 });
    await check((await page.textContent("#intro")).includes("x-api-key"), "GraphiQL without a key explains how to add one (no 401)");
  });

  await step("renderers", async () => {
    // The search snippet and usage chart renderers, on hostile and synthetic
    // input (whatever this server has): text nodes, <mark> and SVG only.
    await page.goto(`${q.url}/console`);
    await page.waitForSelector("#login:not([hidden])", { timeout: 10000 });
    const r = await page.evaluate(async () => {
      const base = document.querySelector("script[type=module]").src.replace(/app\.js$/, "");
      const { snippetNodes } = await import(base + "content.js");
      const { chart } = await import(base + "usage.js");
      const box = document.createElement("div");
      box.append(...snippetNodes('say &lt;img src=x onerror=window.__xss=4&gt; &amp; <mark>hello</mark> <b>x</b>'));
      document.body.append(box);
      const start = new Date(Date.UTC(2026, 0, 1));
      const day = (d) => new Date(start.getTime() + d * 86400000).toISOString();
      const svg = chart([
        { start: day(0), keyId: "1", keyName: "<img src=x onerror=window.__xss=5>", maskedKey: "pk_test_abcd…wxyz", requests: 5, rateLimited: 1, errors: 0 },
        { start: day(0), keyId: "2", keyName: "b", maskedKey: "sk_test_abcd…wxyz", requests: 3, rateLimited: 0, errors: 1 },
        { start: day(29), keyId: "1", keyName: "<img src=x onerror=window.__xss=5>", maskedKey: "pk_test_abcd…wxyz", requests: 8, rateLimited: 0, errors: 0 },
      ], start);
      document.body.append(svg);
      await new Promise((res) => setTimeout(res, 200));
      return {
        text: box.textContent, marks: [...box.querySelectorAll("mark")].map((m) => m.textContent),
        elements: box.querySelectorAll("*").length, rects: svg.querySelectorAll("rect").length,
        legend: svg.querySelector(".legend li")?.textContent, imgs: document.querySelectorAll("img").length,
      };
    });
    await check(r.text === "say <img src=x onerror=window.__xss=4> & hello <b>x</b>" && r.marks.join() === "hello" && r.elements === 1,
      `search snippets: <mark> kept, the rest shown as text (${r.text})`);
    await check(r.rects === 3 && r.legend?.startsWith("<img") && r.imgs === 0, `usage chart: ${r.rects} bars, key names as text`);
  });

  await step("origin", async () => {
    const origin = new URL(q.url).origin;
    const foreign = requests.filter((u) => !u.startsWith("data:") && !u.startsWith("blob:") && new URL(u).origin !== origin);
    await check(requests.length > 20 && foreign.length === 0,
      `no request leaves ${origin} (${requests.length} requests recorded${foreign.length ? `; foreign: ${foreign.slice(0, 3).join(" ")}` : ""})`);
    await check(problems.length === 0, `no CSP violation or script error (${problems.slice(0, 3).join(" | ").slice(0, 300)})`);
    // The one refusal due is the wrong key's; no 404 (favicon, asset, source
    // map) and no 400 (the feature probes answer 200).
    await check(refused.length === 1 && refused[0] === "401 POST /graphql", `failed requests: ${refused.join(", ") || "none"}`);
    await check((await xss()) === undefined, "no XSS probe ever ran");
  });
} catch (e) {
  await check(false, `unexpected ${e?.stack ?? e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  q.proc.kill("SIGTERM");
}
console.log(`console: ${passed} passed, ${failed.length} failed`);
process.exit(failed.length ? 1 : 0);
