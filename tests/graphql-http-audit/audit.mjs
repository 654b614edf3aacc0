// GraphQL-over-HTTP conformance audit for quire, using the `serverAudits`
// of the `graphql-http` package.
//
//   QUIRE_URL=http://127.0.0.1:18181 QUIRE_API_KEY=sk_test_... node audit.mjs
//
// Prints one line per audit (PASS / FAIL / WARN), the warnings (SHOULD and
// MAY audits that failed) with their reasons, then the closing line
// `N passed, M failed`, where M counts only failed MUST audits.
// Exits 1 if any MUST audit failed (or the audit could not run at all).

import { serverAudits } from 'graphql-http';

const REQUEST_TIMEOUT_MS = 10_000; // per HTTP request
const TOTAL_TIMEOUT_MS = 120_000; // whole run
const BODY_PREVIEW = 300; // characters of a failing response's body shown

const baseUrl = (process.env.QUIRE_URL || '').replace(/\/+$/, '');
const apiKey = process.env.QUIRE_API_KEY || '';
if (!baseUrl) {
  console.error('audit.mjs: QUIRE_URL is not set (e.g. http://127.0.0.1:18181)');
  process.exit(2);
}
if (!apiKey) {
  console.error('audit.mjs: QUIRE_API_KEY is not set');
  process.exit(2);
}
const url = `${baseUrl}/graphql`;

// Never hang: the whole run is bounded.
const watchdog = setTimeout(() => {
  console.error(`audit.mjs: gave up after ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
watchdog.unref();

// What was sent and received, keyed by the Response handed to graphql-http,
// so failures can be reported even when the audit already consumed the body.
const exchanges = new WeakMap();
const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

/** Global fetch plus `x-api-key` on every request, recording each exchange. */
async function fetchFn(input, init = {}) {
  const req = new Request(input, init);
  const headers = new Headers(req.headers);
  headers.set('x-api-key', apiKey);
  const sentBody = typeof init.body === 'string' ? init.body : null;
  const res = await fetch(req.url, {
    method: req.method,
    headers,
    body: init.body,
    redirect: 'manual',
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const copy = new Response(NULL_BODY_STATUS.has(res.status) ? null : bytes, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
  exchanges.set(copy, {
    request: {
      method: req.method,
      url: req.url,
      contentType: headers.get('content-type'),
      accept: headers.get('accept'),
      body: sentBody,
    },
    body: new TextDecoder('utf-8').decode(bytes),
  });
  return copy;
}

function oneLine(s, max = BODY_PREVIEW) {
  const flat = String(s).replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

function describe(result) {
  const lines = [`    reason: ${result.reason}`];
  const res = result.response;
  const ex = res && exchanges.get(res);
  if (ex) {
    const r = ex.request;
    const q = r.method === 'GET' ? new URL(r.url).search : '';
    lines.push(
      `    request: ${r.method} /graphql${q}` +
        ` content-type=${r.contentType ?? '-'} accept=${r.accept ?? '-'}` +
        (r.body != null ? ` body=${oneLine(r.body, 200)}` : ''),
    );
  }
  if (res) {
    lines.push(
      `    response: ${res.status} content-type=${res.headers.get('content-type') ?? '-'}`,
      `    body: ${ex ? oneLine(ex.body) || '(empty)' : '(unavailable)'}`,
    );
  }
  return lines.join('\n');
}

const audits = serverAudits({ url, fetchFn });
let passed = 0;
let failed = 0;
const warnings = [];
const failures = [];

for (const { id, name, fn } of audits) {
  let result;
  try {
    result = await fn();
  } catch (err) {
    // graphql-http throws (instead of returning a result) only when the audit
    // could not run at all, e.g. the server is unreachable.
    result = {
      id,
      name,
      status: name.startsWith('MUST') ? 'error' : 'warn',
      reason: `audit could not run: ${err && err.message ? err.message : err}`,
    };
  }
  if (result.status === 'ok') {
    passed++;
    console.log(`PASS ${id} ${name}`);
  } else if (result.status === 'error') {
    failed++;
    failures.push(result);
    console.log(`FAIL ${id} ${name}: ${result.reason}`);
  } else {
    // 'warn' (SHOULD) or 'notice' (MAY): recommendations, not requirements.
    warnings.push(result);
    console.log(`WARN ${id} ${name}: ${result.reason}`);
  }
}

if (failures.length) {
  console.log(`\nFailed MUST audits (${failures.length}):`);
  for (const f of failures) console.log(`  ${f.id} ${f.name}\n${describe(f)}`);
}
if (warnings.length) {
  console.log(`\nWarnings: SHOULD/MAY audits that failed (${warnings.length}):`);
  for (const w of warnings) console.log(`  ${w.id} ${w.name}\n${describe(w)}`);
}
console.log(`\n${warnings.length} warnings`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
