#!/usr/bin/env python3
"""Drives a release quire with wrk and prints medians and ratios.

References measured in the same run:
- the HTTP floor (GET /healthz) and the GraphQL floor ({ __typename } with a
  valid key), both on quire itself;
- a naive reference server (benches/naive_reference.rs: async-graphql + axum +
  sea-orm, no auth, no limits, no cache) over the very database quire seeded,
  answering the same request bodies; each quire mix with a naive counterpart
  gets the ratio of the two servers' own CPU per request.

Servers, each its own process and port (the table names which served a mix):
  quire          quire on a fresh SQLite file (WAL), read cache on
  quire-nocache  a second quire on the same SQLite file, QUIRE_READ_CACHE_MB=0
  naive          the naive reference on the same SQLite file
  pg-quire       quire on a fresh PostgreSQL database, no Redis    } only with
  pg-nocache     a second quire on it, QUIRE_READ_CACHE_MB=0       } a PostgreSQL
  pg-naive       the naive reference on it                         } URL
With --console, three GET mixes of the web console's static answers (the
page, a hashed module, the 978 KB GraphiQL bundle) run against the floors.
Only the servers the selected mixes need are started. The PostgreSQL database
(quire_perf_<pid>) is created on the server of QUIRE_TEST_DATABASE_URL (or
--postgres URL) and dropped at the end, also on failure or SIGTERM.

CPU per request is each server's own user+system CPU from /proc over the wrk
run; for PostgreSQL mixes the database's share (the postgres backends serving
quire_perf_<pid>) is a separate column. Every mix runs once per round, rounds
alternate (A/B/A/B...) and the table shows medians, because the machine is
shared and noisy. Loopback only; every run is bounded in time.
"""
import argparse
import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import search as search_text  # noqa: E402  (the search mixes, beside this file)
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url, body, key=None, timeout=60):
    headers = {"content-type": "application/json"}
    if key:
        headers["x-api-key"] = key
    req = urllib.request.Request(url + "/graphql", data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return json.loads(text)
        except ValueError:
            raise RuntimeError(f"HTTP {e.code}: {text[:300]!r}") from None


def gql(url, key, query, variables=None):
    out = post_json(url, {"query": query, "variables": variables or {}}, key)
    if out.get("errors"):
        raise RuntimeError(f"{query[:60]}: {out['errors']}")
    return out["data"]


def gql_batch(url, key, ops):
    out = post_json(url, ops, key, timeout=120)
    for o in out:
        if o.get("errors"):
            raise RuntimeError(str(o["errors"]))
    return [o["data"] for o in out]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # KiB
    return 0


def pg_backends_cpu(dbname):
    """CPU seconds of each PostgreSQL client backend connected to `dbname`
    (pid -> seconds), found by their process title (`postgres: [cluster: ]
    user dbname host(port) state`). Autovacuum and the shared processes
    (WAL writer, checkpointer) are not counted."""
    found = {}
    client = re.compile(rb"^postgres: (?:\S+: )?\S+ " + re.escape(dbname.encode()) + rb" (?:\S+\(\d+\)|\[local\]) ")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ")
            if client.match(title):
                found[pid] = proc_cpu_seconds(pid)
        except OSError:
            continue
    return found


def cpu_delta(before, after):
    """CPU spent between two pg_backends_cpu readings: backends present at
    both, plus those that started in between; one that exited in between
    takes its CPU with it (rare: the pools keep their connections)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Server:
    """One server process under test: quire or the naive reference."""

    def __init__(self, label, what, argv, env, work):
        self.label, self.what = label, what
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env)
        self.argv = argv
        self.work = work
        self.out_path = os.path.join(work, f"{label}.out")
        self.proc = None

    def start(self, extra_argv=()):
        self.env["QUIRE_LISTEN"] = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([*self.argv, *extra_argv], cwd=self.work, env=self.env,
                                     stdout=open(self.out_path, "w"),
                                     stderr=open(os.path.join(self.work, f"{self.label}.log"), "w"))

    @property
    def pid(self):
        return self.proc.pid

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def wait_ready(self, probe, timeout=60):
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.label} exited with {self.proc.returncode}; see {self.work}/{self.label}.log:\n"
                                 + open(os.path.join(self.work, f"{self.label}.log")).read()[-2000:])
            try:
                probe(self.url)
                return
            except OSError:
                if time.time() > deadline:
                    raise SystemExit(f"{self.label} did not become ready in {timeout} s")
                time.sleep(0.05)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def healthz(url):
    urllib.request.urlopen(url + "/healthz", timeout=1).read()


def typename(url):
    post_json(url, {"query": "{ __typename }"}, timeout=1)


def start_quire(label, what, binary, env, work, with_bootstrap):
    """Starts quire; the first instance on a database prints the bootstrap
    key (returned), a further one must not (the keys exist)."""
    s = Server(label, what, [binary, "serve"], env, work)
    s.start()
    s.wait_ready(healthz)
    # The key is printed before quire listens: once healthy, it is there.
    printed = [l.strip() for l in s.stdout().splitlines() if l.startswith("sk_")]
    if with_bootstrap:
        if not printed:
            raise SystemExit(f"{label} did not print its bootstrap key")
        return s, printed[0]
    if printed:
        raise SystemExit(f"{label} printed a bootstrap key on a database that has keys")
    return s, None


def mint_live_key(binary, env, work):
    # TEST keys manage TEST keys only: the live key that mints the pk_live_
    # keys comes from the operator command, as for a user.
    return json.loads(subprocess.run(
        [binary, "admin", "keys", "create", "--project", "default", "--name", "bench-live",
         "--type", "secret", "--mode", "live", "--scopes", "*", "--rate-limit", "10000000", "--json"],
        env=env, cwd=work, capture_output=True, text=True, check=True, timeout=120).stdout)["key"]


def seed(url, root, live, records, keys, log, where, search=False):
    """Seeds through the API with the live key (its budget is 10,000,000/h);
    the bootstrap key only mints the sk_test_ key used for previews and
    writes. Also creates the `note` model that createRecord mixes write to.
    With `search`, records hold varied text (search.py) and the public keys
    also hold `search:read`."""
    t0 = time.time()
    gql(url, live, """mutation { createModel(input: {key: "page", name: "Page", fields: [
        {name: "slug", type: STRING, required: true, unique: true},
        {name: "title", type: STRING, required: true},
        {name: "body", type: TEXT},
        {name: "rank", type: INTEGER}]}) { key } }""")
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 4
    batch = 10

    def create_and_publish(start):
        ops = [{"query": "mutation($d: JSON!) { createRecord(modelKey: \"page\", data: $d) { id } }",
                "variables": {"d": search_text.page(i) if search else {"slug": f"page-{i}", "title": f"Page {i}", "body": body[:200], "rank": i}}}
               for i in range(start, min(start + batch, records))]
        new_ids = [c["createRecord"]["id"] for c in gql_batch(url, live, ops)]
        pubs = [{"query": "mutation($id: ID!) { publishRecord(id: $id) { id } }", "variables": {"id": i}} for i in new_ids]
        gql_batch(url, live, pubs)
        return new_ids

    # A few batches in flight: PostgreSQL commits them together (one client
    # waits for every commit's fsync); quire queues them on SQLite.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        ids = [i for new_ids in pool.map(create_and_publish, range(0, records, batch)) for i in new_ids]
    log(f"{where}: seeded {records} published records in {time.time() - t0:.1f} s")
    t0 = time.time()
    public = []
    for start in range(0, keys, batch):
        ops = [{"query": "mutation($n: String!) { createApiKey(input: {name: $n, type: PUBLIC, mode: LIVE, scopes: " + ("[\"records:read\", \"search:read\"]" if search else "[\"records:read\"]") + ", rateLimitPerHour: 10000000}) { key } }",
                "variables": {"n": f"bench-{i}"}} for i in range(start, min(start + batch, keys))]
        public.extend(c["createApiKey"]["key"] for c in gql_batch(url, live, ops))
    secret = gql(url, root, "mutation { createApiKey(input: {name: \"bench-secret\", type: SECRET, mode: TEST, scopes: [\"*\"], rateLimitPerHour: 10000000}) { key } }")["createApiKey"]["key"]
    log(f"{where}: seeded {keys} keys in {time.time() - t0:.1f} s")
    # createRecord under load: a model without unique fields, so every
    # request can carry the same body.
    gql(url, root, """mutation { createModel(input: {key: "note", name: "Note", fields: [
        {name: "title", type: STRING, required: true}, {name: "body", type: TEXT}]}) { key } }""")
    if search:
        search_text.seed_models(gql, url, root)
    return ids, public, secret


LUA = r"""
local bodies = {}
local keys = {}
local weights = {}
local n = 0
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"

function init(args)
  for line in io.lines(args[1]) do
    local w, k, b = line:match("^(%d+)\t([^\t]+)\t(.*)$")
    n = n + 1
    weights[n] = tonumber(w); keys[n] = k; bodies[n] = b
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  local r = math.random(1, weights[n])
  local i = 1
  while weights[i] < r do i = i + 1 end
  wrk.headers["x-api-key"] = keys[i]
  return wrk.format(nil, nil, nil, bodies[i])
end

function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"seconds\": %f, \"p50\": %f, \"p99\": %f, \"non2xx\": %d, \"errors\": %d}\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def console_path(url, kind):
    """The path a GET mix fetches: /healthz, /console, or a console asset
    under the hash the served page names."""
    if kind is None:
        return "/healthz"
    target = kind[len("get:"):]
    if target.startswith("/"):
        return target
    with urllib.request.urlopen(url + "/console", timeout=10) as r:
        page = r.read().decode()
    base = re.search(r"/console/assets/[0-9a-f]+/", page).group(0)
    return base + target


def write_mix(path, entries):
    """entries: (cumulative weight, key, json body) lines."""
    total = 0
    with open(path, "w") as f:
        for weight, key, body in entries:
            total += weight
            f.write(f"{total}\t{key}\t{json.dumps(body)}\n")


LIST_Q = {"query": "{ records(modelKey: \"page\", limit: 10) { items { id data } } }"}
TYPENAME = {"query": "{ __typename }"}
CREATE_NOTE = "mutation($d: JSON!) { createRecord(modelKey: \"note\", data: $d) { id } }"


def mix_bodies(rng, ids, public, secret, records):
    """The request mixes quire serves, by kind; the same bodies go to the
    naive reference (which ignores the key)."""
    return {
        "typename": [(1, k, TYPENAME) for k in public[:200]],
        "records": [(1, k, LIST_Q) for k in public[:200]],
        "record": [(1, rng.choice(public), {"query": "query($id: ID!) { record(id: $id) { id data } }", "variables": {"id": i}})
                   for i in rng.sample(ids, min(500, len(ids)))],
        "where": [(1, rng.choice(public), {"query": "query($w: JSON) { records(modelKey: \"page\", where: $w) { items { id data } } }",
                                           "variables": {"w": {"slug": f"page-{rng.randrange(records)}"}}}) for _ in range(500)],
        "preview": [(1, secret, {"query": "{ records(modelKey: \"page\", limit: 10, preview: true) { items { id data } } }"})],
        "update": [(1, secret, {"query": "mutation($id: ID!, $d: JSON!) { u: updateRecord(id: $id, data: $d) { version } p: publishRecord(id: $id) { id } }",
                                "variables": {"id": i, "d": {"slug": f"page-upd-{n}", "title": "updated", "rank": n}}})
                   for n, i in enumerate(rng.sample(ids, min(200, len(ids))))],
        "versions": [(1, rng.choice(public), {"query": "query($id: ID!) { recordVersions(id: $id, limit: 5) { items { version data } } }", "variables": {"id": i}})
                     for i in rng.sample(ids, min(500, len(ids)))],
        "create": [(1, secret, {"query": CREATE_NOTE, "variables": {"d": {"title": "new note", "body": "x" * 200}}})],
        "mixed": ([(19, k, LIST_Q) for k in public[:50]]
                  + [(1, secret, {"query": CREATE_NOTE, "variables": {"d": {"title": "mixed", "body": "y" * 200}}})] * 50),
        **search_text.bodies(rng, public, secret, records),
    }


# Every mix: (name, server label, body kind, naive counterpart). The order is
# the table's. Bodies come from the seed of the server's database.
HTTP_FLOOR = "http floor: GET /healthz"
GQL_FLOOR = "graphql floor: { __typename }"
MIXES = [
    (HTTP_FLOOR, "quire", None, None),
    (GQL_FLOOR, "quire", "typename", None),
    ("records(limit: 10)", "quire", "records", "naive: records(limit: 10)"),
    ("records(limit: 10), cache off", "quire-nocache", "records", "naive: records(limit: 10)"),
    ("record(id)", "quire", "record", "naive: record(id)"),
    ("record(id), cache off", "quire-nocache", "record", "naive: record(id)"),
    ("records(limit: 10), usage on", "quire", "records", "records(limit: 10), usage off"),
    ("records(limit: 10), usage off", "quire-nousage", "records", None),
    ("records where unique", "quire", "where", None),
    ("records preview", "quire", "preview", None),
    ("updateRecord + publishRecord", "quire", "update", None),
    ("createRecord", "quire", "create", "naive: createRecord"),
    ("recordVersions(id)", "quire", "versions", None),
    ("95% reads / 5% writes", "quire", "mixed", None),
    ("naive: records(limit: 10)", "naive", "records", None),
    ("naive: record(id)", "naive", "record", None),
    ("naive: createRecord", "naive", "create", None),
    ("pg: records(limit: 10)", "pg-quire", "records", "pg naive: records(limit: 10)"),
    ("pg: records(limit: 10), cache off", "pg-nocache", "records", "pg naive: records(limit: 10)"),
    ("pg: record(id)", "pg-quire", "record", "pg naive: record(id)"),
    ("pg: createRecord", "pg-quire", "create", "pg naive: createRecord"),
    ("pg: updateRecord + publishRecord", "pg-quire", "update", None),
    ("pg: recordVersions(id)", "pg-quire", "versions", None),
    ("pg naive: records(limit: 10)", "pg-naive", "records", None),
    ("pg naive: record(id)", "pg-naive", "record", None),
    ("pg naive: createRecord", "pg-naive", "create", None),
    # The web console's static answers (--console, or named in --only): GETs.
    ("console: GET /console", "quire", "get:/console", None),
    ("console: GET app.js (hashed)", "quire", "get:app.js", None),
    ("console: GET graphiql.min.js (978 KB)", "quire", "get:vendor/graphiql.min.js", None),
    *search_text.MIXES,
]
FLOORS = (HTTP_FLOOR, GQL_FLOOR)


def parse_only(text):
    """`--only` names mixes separated by commas; a name may itself contain
    a comma ("records(limit: 10), cache off"): the longest known name wins."""
    names = sorted((m[0] for m in MIXES), key=len, reverse=True)
    chosen, i = [], 0
    while i < len(text):
        match = next((n for n in names if text.startswith(n, i) and text[i + len(n):i + len(n) + 1] in ("", ",")), None)
        if match is None:
            bad = text[i:].split(",")[0]
            raise SystemExit(f"--only: no mix named {bad!r}; mixes: " + "; ".join(m[0] for m in MIXES))
        chosen.append(match)
        i += len(match) + 1
    return set(chosen)


def pg_admin(admin_url, sql):
    done = subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"psql: {sql}: {done.stderr.strip()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the quire release binary")
    ap.add_argument("--naive-bin", help="the naive reference (benches/naive_reference.rs); without it, no naive mixes")
    ap.add_argument("--short", action="store_true", help="tiny data, one short round: proves the harness works")
    ap.add_argument("--records", type=int)
    ap.add_argument("--keys", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--console", action="store_true", help="also the console's static GETs (console: mixes)")
    ap.add_argument("--only", help="comma-separated mixes to run (the floors always run)")
    ap.add_argument("--soak", type=int, help="seconds of the memory soak at saturation (0: none)")
    ap.add_argument("--warmup", type=int, help="seconds of load before the soak's first RSS reading")
    ap.add_argument("--postgres", help="PostgreSQL server URL for the pg mixes (default: QUIRE_TEST_DATABASE_URL)")
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL mixes")
    ap.add_argument("--files", action="store_true", help="only the files benchmark (files_bench below)")
    ap.add_argument("--search", action="store_true", help="seed varied text and run the search mixes (search.py)")
    ap.add_argument("--seed-cache", help="directory keeping the seeded SQLite database for later runs with the same --records/--keys/--search")
    args = ap.parse_args()
    if args.files:
        return files_bench(args)
    records = args.records or (300 if args.short else 100_000)
    keys = args.keys or (20 if args.short else 10_000)
    rounds = args.rounds or (1 if args.short else 5)
    seconds = args.seconds or (2 if args.short else 10)
    soak = args.soak if args.soak is not None else (3 if args.short else 300)
    warmup = args.warmup if args.warmup is not None else (1 if args.short else 30)
    log = lambda m: print(f"# {m}", file=sys.stderr, flush=True)
    binary = os.path.abspath(args.bin)
    naive_bin = os.path.abspath(args.naive_bin) if args.naive_bin else None
    pg_url = None if args.no_postgres else (args.postgres or os.environ.get("QUIRE_TEST_DATABASE_URL") or None)
    if pg_url and not pg_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit(f"--postgres: not a PostgreSQL URL: {pg_url}")

    skipped = []
    selected = ([m for m in MIXES if m[0] in parse_only(args.only) or m[0] in FLOORS] if args.only
                else [m for m in MIXES if args.console or not m[0].startswith("console:")])
    if not args.search and any(m[2] in search_text.KINDS for m in selected):
        skipped.append("search mixes (no --search)")
        selected = [m for m in selected if m[2] not in search_text.KINDS]
    if naive_bin is None and any("naive" in m[1] for m in selected):
        skipped.append("naive mixes (no --naive-bin)")
        selected = [m for m in selected if "naive" not in m[1]]
    if any(m[1].startswith("pg-") for m in selected):
        reason = None
        if args.no_postgres:
            reason = "--no-postgres"
        elif not pg_url:
            reason = "no QUIRE_TEST_DATABASE_URL or --postgres"
        elif subprocess.run(["sh", "-c", "command -v psql"], capture_output=True).returncode != 0:
            reason = "psql not found"
        if reason:
            skipped.append(f"PostgreSQL mixes ({reason})")
            selected = [m for m in selected if not m[1].startswith("pg-")]
    needed = {m[1] for m in selected}

    # SIGTERM (CI timeouts) unwinds like Ctrl-C, so the finally below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="quire-perf-")
    base_env = dict(os.environ, RUST_LOG="warn", QUIRE_MAX_BATCH="10")
    base_env.pop("QUIRE_REDIS_URL", None)
    base_env.pop("QUIRE_READ_CACHE_MB", None)
    servers = {}
    pg_db = f"quire_perf_{os.getpid()}"
    pg_created = False
    finished = False
    try:
        if any(l.startswith("pg-") for l in needed):
            # First, so that an unusable server fails the run at once.
            pg_admin(pg_url, f'CREATE DATABASE "{pg_db}"')
            pg_created = True
            log(f"PostgreSQL: created database {pg_db}")
        sqlite_url = f"sqlite://{work}/perf.db?mode=rwc"
        env = dict(base_env, QUIRE_DATABASE_URL=sqlite_url)
        # --seed-cache: the seeded SQLite file and its keys, reused by a run
        # with the same seed arguments (seeding 100,000 records takes minutes).
        cache_name = f"seed-{records}-{keys}-{'search' if args.search else 'plain'}"
        cached = os.path.join(args.seed_cache, cache_name) if args.seed_cache else None
        if cached and os.path.exists(os.path.join(cached, "seed.json")):
            for name in os.listdir(cached):
                if name.startswith("perf.db"):
                    shutil.copy(os.path.join(cached, name), os.path.join(work, name))
            with open(os.path.join(cached, "seed.json")) as f:
                ids, public, secret = json.load(f)
            servers["quire"], _ = start_quire("quire", "quire, SQLite (WAL), read cache on", binary, env, work, False)
            log(f"SQLite: seeded database reused from {cached}")
        else:
            servers["quire"], root = start_quire("quire", "quire, SQLite (WAL), read cache on", binary, env, work, True)
            live = mint_live_key(binary, env, work)
            ids, public, secret = seed(servers["quire"].url, root, live, records, keys, log, "SQLite", args.search)
            if cached:
                os.makedirs(cached, exist_ok=True)
                servers["quire"].stop()
                for name in os.listdir(work):
                    if name.startswith("perf.db"):
                        shutil.copy(os.path.join(work, name), os.path.join(cached, name))
                with open(os.path.join(cached, "seed.json"), "w") as f:
                    json.dump([ids, public, secret], f)
                servers["quire"], _ = start_quire("quire", "quire, SQLite (WAL), read cache on", binary, env, work, False)
        quire = servers["quire"]
        idle_rss = proc_status(quire.pid, "VmRSS")
        rng = random.Random(7)
        bodies = {"sqlite": mix_bodies(rng, ids, public, secret, records)}
        if "quire-nocache" in needed:
            servers["quire-nocache"], _ = start_quire(
                "quire-nocache", "a second quire on the same SQLite file, QUIRE_READ_CACHE_MB=0",
                binary, dict(env, QUIRE_READ_CACHE_MB="0"), work, False)
        if "quire-nousage" in needed:
            servers["quire-nousage"], _ = start_quire(
                "quire-nousage", "a second quire on the same SQLite file, QUIRE_USAGE=false",
                binary, dict(env, QUIRE_USAGE="false"), work, False)
        if "naive" in needed:
            s = Server("naive", "naive reference on the same SQLite file", [naive_bin], base_env, work)
            s.start(["--serve", f"127.0.0.1:{s.port}", "--database", sqlite_url])
            s.wait_ready(typename)
            servers["naive"] = s

        if any(l.startswith("pg-") for l in needed):
            db_url = urllib.parse.urlunsplit(urllib.parse.urlsplit(pg_url)._replace(path="/" + pg_db))
            penv = dict(base_env, QUIRE_DATABASE_URL=db_url)
            servers["pg-quire"], proot = start_quire("pg-quire", f"quire, PostgreSQL {pg_db}, no Redis",
                                                     binary, penv, work, True)
            plive = mint_live_key(binary, penv, work)
            pids, ppublic, psecret = seed(servers["pg-quire"].url, proot, plive, records, keys, log, "PostgreSQL", args.search)
            # The statistics autovacuum would have gathered by now on a
            # database in use: right after a bulk load, the planner takes
            # `search_docs`' (project, view) index for a handful of rows and
            # tests every document's tsvector (18 ms against 2 ms a search
            # on 20,000 records).
            pg_admin(db_url, "ANALYZE")
            bodies["pg"] = mix_bodies(random.Random(7), pids, ppublic, psecret, records)
            if "pg-nocache" in needed:
                servers["pg-nocache"], _ = start_quire(
                    "pg-nocache", f"a second quire on {pg_db}, QUIRE_READ_CACHE_MB=0",
                    binary, dict(penv, QUIRE_READ_CACHE_MB="0"), work, False)
            if "pg-naive" in needed:
                s = Server("pg-naive", f"naive reference on {pg_db}", [naive_bin], base_env, work)
                s.start(["--serve", f"127.0.0.1:{s.port}", "--database", db_url])
                s.wait_ready(typename)
                servers["pg-naive"] = s

        lua = os.path.join(work, "mix.lua")
        with open(lua, "w") as f:
            f.write(LUA)
        # The soak: every read kind and both write kinds at once, so the read
        # cache fills and is invalidated while records keep being added.
        b = bodies["sqlite"]
        soak_mix = ([(40, k, LIST_Q) for k in public[:20]] + b["record"] * 2 + b["where"]
                    + [(5, secret, body) for _, _, body in b["create"]]
                    + [(1, k, body) for _, k, body in b["update"][:20]])

        # One request of each mix first: a mix whose body the server rejects
        # would otherwise measure error answers (status 200 in GraphQL).
        for name, label, kind, _ in selected:
            if kind is not None and not kind.startswith("get:"):
                _, key, body = bodies["pg" if label.startswith("pg-") else "sqlite"][kind][-1]
                try:
                    out = post_json(servers[label].url, body, key)
                except OSError as e:
                    raise SystemExit(f"{name} [{label}]: {e}")
                if out.get("errors"):
                    raise SystemExit(f"{name} [{label}]: {out['errors']}")
        log("servers: " + "; ".join(f"{l} = {s.what} (pid {s.pid}, :{s.port})" for l, s in servers.items()))
        results = {m[0]: [] for m in selected}
        peak = 0
        for r in range(rounds):
            for name, label, kind, _ in selected:
                server = servers[label]
                if kind is None or kind.startswith("get:"):
                    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
                           "-s", os.path.join(HERE, "done.lua"), server.url + console_path(server.url, kind)]
                else:
                    path = os.path.join(work, "mix.txt")
                    write_mix(path, bodies["pg" if label.startswith("pg-") else "sqlite"][kind])
                    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
                           "-s", lua, server.url + "/graphql", "--", path]
                pg = label.startswith("pg-")
                cpu0 = proc_cpu_seconds(server.pid)
                db0 = pg_backends_cpu(pg_db) if pg else {}
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
                cpu1 = proc_cpu_seconds(server.pid)
                db1 = pg_backends_cpu(pg_db) if pg else {}
                line = next((l for l in out.splitlines() if l.startswith("JSON ")), None)
                if line is None:
                    raise SystemExit(f"wrk printed no summary for {name}:\n{out}")
                m = json.loads(line[5:])
                m["rps"] = m["requests"] / m["seconds"]
                m["cpu_us"] = (cpu1 - cpu0) * 1e6 / max(1, m["requests"])
                m["db_us"] = cpu_delta(db0, db1) * 1e6 / max(1, m["requests"]) if pg else None
                results[name].append(m)
                if label == "quire":
                    peak = max(peak, proc_status(server.pid, "VmHWM"))
                log(f"round {r + 1} {name} [{label}]: {m['rps']:.0f} req/s, {m['cpu_us']:.0f} us/req, "
                    f"non-2xx {m['non2xx']}, errors {m['errors']}")

        soak_rows = []
        if soak > 0:
            path = os.path.join(work, "mix.txt")
            write_mix(path, soak_mix)
            total = warmup + soak
            cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{total}s",
                   "-s", lua, quire.url + "/graphql", "--", path]
            log(f"soak: {warmup} s warm-up, then {soak} s at saturation")
            wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            t0 = time.time()
            time.sleep(warmup)
            after_warmup = proc_status(quire.pid, "VmRSS")
            anon_after_warmup = proc_status(quire.pid, "RssAnon")
            step = max(1, soak // 10)
            while time.time() - t0 < total - 0.5:
                time.sleep(min(step, max(0.1, total - (time.time() - t0) - 0.5)))
                soak_rows.append((time.time() - t0, proc_status(quire.pid, "VmRSS"),
                                  proc_status(quire.pid, "RssAnon"), proc_status(quire.pid, "RssFile"),
                                  proc_status(quire.pid, "RssShmem")))
            out, _ = wrk.communicate(timeout=120)
            line = next((l for l in out.splitlines() if l.startswith("JSON ")), None)
            soak_summary = json.loads(line[5:]) if line else {}
            end_rss = soak_rows[-1][1] if soak_rows else after_warmup
            peak = max(peak, proc_status(quire.pid, "VmHWM"))

        med = {n: {k: statistics.median(x[k] for x in runs) for k in ("rps", "p50", "p99", "cpu_us", "non2xx", "errors")}
               for n, runs in results.items()}
        for n, runs in results.items():
            med[n]["db_us"] = statistics.median(x["db_us"] for x in runs) if runs[0]["db_us"] is not None else None
        http = med[HTTP_FLOOR]["rps"]
        floor = med[GQL_FLOOR]["rps"]
        counterpart = {m[0]: m[3] for m in selected}
        label_of = {m[0]: m[1] for m in selected}
        print(f"\nquire load benchmark: {records} records, {keys} keys, {rounds} rounds x {seconds} s, "
              f"{args.connections} connections, wrk -t{args.threads}; medians")
        print("servers: " + "; ".join(f"{l} = {s.what}" for l, s in servers.items()))
        if skipped:
            print("skipped: " + "; ".join(skipped))
        print(f"{'mix':34} {'server':13} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'+PG us/req':>10} "
              f"{'non-2xx':>7} {'vs GraphQL floor':>16} {'vs HTTP floor':>13} {'vs naive (CPU)':>14}")
        for name, m in med.items():
            db = f"{m['db_us']:10.1f}" if m["db_us"] is not None else f"{'':>10}"
            ref = counterpart.get(name)
            vs_naive = f"{m['cpu_us'] / med[ref]['cpu_us']:14.2f}" if ref in med and med[ref]["cpu_us"] > 0 else f"{'':>14}"
            print(f"{name:34} {label_of[name]:13} {m['rps']:8.0f} {m['p50']:7.2f} {m['p99']:7.2f} {m['cpu_us']:10.1f} {db} "
                  f"{m['non2xx']:7.0f} {m['rps'] / floor:16.2f} {m['rps'] / http:13.2f} {vs_naive}")
        print("CPU us/req: the serving process's own CPU (SQLite runs inside it); "
              + (f"+PG us/req: the PostgreSQL client backends of {pg_db}; " if pg_created else "")
              + "vs naive (CPU): CPU us/req over the naive counterpart's "
              "(records -> naive records, record(id) -> naive record(id), createRecord -> naive createRecord)")
        print(f"server RSS (quire): idle after start {idle_rss / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
        if soak > 0:
            rps = soak_summary.get("requests", 0) / max(1e-9, soak_summary.get("seconds", 1))
            print(f"soak: {soak} s after {warmup} s warm-up at {rps:.0f} req/s "
                  f"(non-2xx {soak_summary.get('non2xx', '?')}, errors {soak_summary.get('errors', '?')}); "
                  f"RSS after warm-up {after_warmup / 1024:.1f} MiB, at the end {end_rss / 1024:.1f} MiB "
                  f"({(end_rss / max(1, after_warmup) - 1) * 100:+.1f} %), "
                  f"max during soak {max(r[1] for r in soak_rows) / 1024 if soak_rows else 0:.1f} MiB")
            if soak_rows:
                anon_end = soak_rows[-1][2]
                print(f"soak, heap only (RssAnon): after warm-up {anon_after_warmup / 1024:.1f} MiB, at the end "
                      f"{anon_end / 1024:.1f} MiB ({(anon_end / max(1, anon_after_warmup) - 1) * 100:+.1f} %); "
                      "the rest is mapped files: the binary and SQLite's shared memory")
                print("soak RSS series (s: total/anon/file/shmem MiB): " + "; ".join(
                    f"{t:.0f}: {r / 1024:.0f}/{a / 1024:.0f}/{f / 1024:.0f}/{sh / 1024:.0f}" for t, r, a, f, sh in soak_rows))
        for label in ("quire", "pg-quire"):
            if label not in servers:
                continue
            metrics = urllib.request.urlopen(servers[label].url + "/metrics", timeout=5).read().decode()
            cache = {l.split()[0]: l.split()[1] for l in metrics.splitlines()
                     if l.startswith("quire_read_cache") and not l.startswith("#")}
            if cache:
                print(f"read cache ({label}): " + ", ".join(f"{k} {v}" for k, v in sorted(cache.items())))
        for label, server in servers.items():
            with open(os.path.join(work, f"{label}.log"), errors="replace") as f:
                lines = f.read().splitlines()
            if lines:
                print(f"{label} logged {len(lines)} lines (RUST_LOG=warn), first: {lines[0][:200]}")
        bad = [n for n, m in med.items() if m["errors"] > 0 or m["non2xx"] > 0]
        if bad:
            print(f"mixes with errors or non-2xx responses: {', '.join(bad)}")
        finished = True
    finally:
        for s in reversed(list(servers.values())):
            s.stop()
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work} (server logs: *.log)")
        if pg_created:
            try:
                pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
                log(f"PostgreSQL: dropped database {pg_db}")
            except (SystemExit, subprocess.SubprocessError, OSError) as e:
                log(f"PostgreSQL: could not drop database {pg_db}: {e}")


def png_bytes(w, h):
    """A real PNG of w x h (a gradient, so it compresses like a photo does not)."""
    import struct
    import zlib
    rng = random.Random(1)
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 3 + rng.randrange(16)) & 255 for x in range(w * 3)) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def upload_file(url, key, path, name, work):
    """POST /files?filename=NAME streaming the file (curl, the key in a
    header file so no command line shows it); the file object."""
    headers = os.path.join(work, "curl-headers")
    with open(headers, "w") as f:
        f.write(f"x-api-key: {key}\ncontent-type: application/octet-stream\n")
    out = subprocess.run(["curl", "-sS", "-X", "POST", "-H", f"@{headers}", "-w", "\n%{http_code}",
                          "--data-binary", f"@{path}", f"{url}/files?filename={name}"],
                         capture_output=True, timeout=120)
    body, _, status = out.stdout.decode(errors="replace").rpartition("\n")
    if status != "201":
        raise SystemExit(f"upload of {name} answered {status}: {body[:300]} {out.stderr[:300]!r}")
    return json.loads(body)["file"]


def files_bench(args):
    """The files benchmark (issue 15), all against references measured in
    the same run: upload MiB/s of a 10 MiB file against `cp` of it on the
    same disk; a published 100 KiB file (req/s, CPU us/req) against GET
    /healthz; a cached 400 px variant against its original."""
    log = lambda m: print(f"# {m}", file=sys.stderr, flush=True)
    binary = os.path.abspath(args.bin)
    rounds = args.rounds or (1 if args.short else 5)
    seconds = args.seconds or (2 if args.short else 10)
    if shutil.which("curl") is None:
        raise SystemExit("the files benchmark needs curl")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="quire-files-perf-")
    server = None
    try:
        env = dict(os.environ, RUST_LOG="warn", QUIRE_DATABASE_URL=f"sqlite://{work}/perf.db?mode=rwc",
                   QUIRE_FILES_DIR=os.path.join(work, "files"), QUIRE_MAX_FILE_BYTES=str(64 << 20))
        env.pop("QUIRE_FILES_URL", None)
        server, root = start_quire("quire", "quire, SQLite, files on local disk", binary, env, work, True)
        # The upload: 10 MiB of random bytes, cp vs POST /files, alternating.
        big = os.path.join(work, "ten.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(10 << 20))
        cp_s, up_s = [], []
        for i in range(max(3, rounds)):
            t = time.perf_counter()
            subprocess.run(["cp", big, os.path.join(work, f"copy{i}.bin")], check=True)
            cp_s.append(time.perf_counter() - t)
            os.remove(os.path.join(work, f"copy{i}.bin"))
            t = time.perf_counter()
            upload_file(server.url, root, big, f"ten{i}.bin", work)
            up_s.append(time.perf_counter() - t)
        mib = lambda secs: 10 / statistics.median(secs)
        # Serving: a published 100 KiB file, the original of a 1200x900
        # image and its cached 400 px variant.
        small = os.path.join(work, "small.bin")
        with open(small, "wb") as f:
            f.write(os.urandom(100 << 10))
        image = os.path.join(work, "image.png")
        with open(image, "wb") as f:
            f.write(png_bytes(1200, 900))
        urls = {}
        for name, path in (("small.bin", small), ("image.png", image)):
            fid = upload_file(server.url, root, path, name, work)["id"]
            urls[name] = gql(server.url, root, "mutation($id: ID!) { publishFile(id: $id) { url } }",
                             {"id": fid})["publishFile"]["url"]
        variant = urls["image.png"] + "?w=400"
        urllib.request.urlopen(variant, timeout=30).read()  # made once, then read from storage
        mixes = [("GET /healthz (HTTP floor)", server.url + "/healthz"),
                 ("published 100 KiB file", urls["small.bin"]),
                 (f"original image ({os.path.getsize(image) >> 10} KiB, 1200x900)", urls["image.png"]),
                 ("cached 400 px variant", variant)]
        results = {name: [] for name, _ in mixes}
        for r in range(rounds):
            for name, url in mixes:
                cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
                       "-s", os.path.join(HERE, "done.lua"), url]
                cpu0 = proc_cpu_seconds(server.pid)
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
                cpu1 = proc_cpu_seconds(server.pid)
                line = next((l for l in out.splitlines() if l.startswith("JSON ")), None)
                if line is None:
                    raise SystemExit(f"wrk printed no summary for {name}:\n{out}")
                m = json.loads(line[5:])
                m["rps"] = m["requests"] / m["seconds"]
                m["cpu_us"] = (cpu1 - cpu0) * 1e6 / max(1, m["requests"])
                results[name].append(m)
                log(f"round {r + 1} {name}: {m['rps']:.0f} req/s, {m['cpu_us']:.0f} us/req, non-2xx {m['non2xx']}")
        print(f"\nquire files benchmark: {rounds} rounds x {seconds} s, {args.connections} connections, "
              f"wrk -t{args.threads}; medians")
        print(f"upload of a 10 MiB file: POST /files {mib(up_s):.0f} MiB/s, cp {mib(cp_s):.0f} MiB/s "
              f"(upload/cp {mib(up_s) / mib(cp_s):.2f}; {len(up_s)} runs each, alternating)")
        floor = statistics.median(x["rps"] for x in results[mixes[0][0]])
        print(f"{'mix':44} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'non-2xx':>7} {'vs HTTP floor':>13}")
        for name, _ in mixes:
            med = {k: statistics.median(x[k] for x in results[name]) for k in ("rps", "p50", "p99", "cpu_us", "non2xx")}
            print(f"{name:44} {med['rps']:8.0f} {med['p50']:7.2f} {med['p99']:7.2f} {med['cpu_us']:10.1f} "
                  f"{med['non2xx']:7.0f} {med['rps'] / floor:13.2f}")
        print(f"server RSS: peak {proc_status(server.pid, 'VmHWM') / 1024:.1f} MiB")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
