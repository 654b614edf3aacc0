// A page on another origin calls quire from headless Debian chromium (issue 12).
// Started by suite.py with QUIRE_URL and QUIRE_LIVE_PUBLIC_KEY (a pk_live_ key
// with records:read). Serves a tiny page from a second loopback HTTP server (so
// another port: another origin), whose script POSTs to quire's /graphql with
// the key in x-api-key plus a custom header and sentry-trace (both trigger a
// CORS preflight), then reads X-RateLimit-Remaining from the response. Never
// downloads a browser: playwright-core drives /usr/bin/chromium.
import http from "node:http";
import { chromium } from "playwright-core";

const QUIRE = process.env.QUIRE_URL;
const KEY = process.env.QUIRE_LIVE_PUBLIC_KEY;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

const failed = [];
function check(ok, what) {
  console.log(`  ${ok ? "ok  " : "FAIL"} browser: ${what}`);
  if (!ok) failed.push(what);
}

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>quire from another origin</title></head>
<body><pre id="out">loading…</pre>
<script>
(async () => {
  try {
    const res = await fetch(${JSON.stringify(QUIRE + "/graphql")}, {
      method: "POST",
      mode: "cors",
      headers: {
        "content-type": "application/json",
        "x-api-key": ${JSON.stringify(KEY)},
        "x-my-app": "demo",
        "sentry-trace": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
      },
      body: JSON.stringify({
        query: "query Articles($m: String!) { records(modelKey: $m, limit: 5) { items { id data } } }",
        variables: { m: "article" },
      }),
    });
    const body = await res.json();
    window.__result = {
      status: res.status,
      remaining: res.headers.get("x-ratelimit-remaining"),
      limit: res.headers.get("x-ratelimit-limit"),
      items: body.data ? body.data.records.items.length : null,
      errors: body.errors || null,
    };
  } catch (e) {
    window.__result = { error: String(e) };
  }
  document.getElementById("out").textContent = JSON.stringify(window.__result);
})();
</script></body></html>`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  res.end(page);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

let browser;
try {
  check(origin !== new URL(QUIRE).origin, `page served from ${origin}, quire at ${new URL(QUIRE).origin}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30000 });
  console.log(`  browser: chromium = ${browser.version()}`);
  const tab = await browser.newPage();
  const consoleLines = [];
  tab.on("console", (m) => consoleLines.push(m.text()));
  await tab.goto(origin + "/", { timeout: 15000 });
  await tab.waitForFunction(() => window.__result, null, { timeout: 15000 });
  const r = await tab.evaluate(() => window.__result);
  check(
    !r.error && r.status === 200 && r.items > 0 && !r.errors,
    `cross-origin POST with a pk_live_ key, x-my-app and sentry-trace: HTTP ${r.status}, ${r.items} records` +
      (r.error ? ` (${r.error}; console: ${consoleLines.join(" | ").slice(0, 300)})` : "") +
      (r.errors ? ` (errors: ${JSON.stringify(r.errors).slice(0, 200)})` : ""),
  );
  check(
    /^\d+$/.test(r.remaining ?? "") && Number(r.remaining) < Number(r.limit),
    `page read X-RateLimit-Remaining: ${r.remaining} (X-RateLimit-Limit: ${r.limit})`,
  );
} catch (e) {
  check(false, `unexpected ${e?.stack ?? e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  server.close();
}
console.log(failed.length ? `browser: ${failed.length} check(s) failed` : "browser: all checks passed");
process.exit(failed.length ? 1 : 0);
