#!/usr/bin/env python3
"""Drives a release quire with wrk and prints medians and ratios.

Baselines measured in the same run: the HTTP floor (GET /healthz) and the
GraphQL floor ({ __typename } with a valid key). Every mix runs once per
round, rounds alternate (A/B/A/B...) and the table shows medians, because the
machine is shared and noisy. Loopback only; every run is bounded in time.
"""
import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(url, key, query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(url + "/graphql", data=body, method="POST",
                                 headers={"content-type": "application/json", "x-api-key": key})
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.loads(r.read())
    if out.get("errors"):
        raise RuntimeError(f"{query[:60]}: {out['errors']}")
    return out["data"]


def gql_batch(url, key, ops):
    body = json.dumps(ops).encode()
    req = urllib.request.Request(url + "/graphql", data=body, method="POST",
                                 headers={"content-type": "application/json", "x-api-key": key})
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.loads(r.read())
    for o in out:
        if o.get("errors"):
            raise RuntimeError(str(o["errors"]))
    return [o["data"] for o in out]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # KiB
    return 0


def seed(url, root, live, records, keys, log):
    """Seeds through the API with the live key (its budget is 10,000,000/h);
    the bootstrap key only mints the sk_test_ key used for previews."""
    t0 = time.time()
    gql(url, live, """mutation { createModel(input: {key: "page", name: "Page", fields: [
        {name: "slug", type: STRING, required: true, unique: true},
        {name: "title", type: STRING, required: true},
        {name: "body", type: TEXT},
        {name: "rank", type: INTEGER}]}) { key } }""")
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 4
    ids = []
    batch = 10
    for start in range(0, records, batch):
        ops = []
        for i in range(start, min(start + batch, records)):
            ops.append({"query": "mutation($d: JSON!) { createRecord(modelKey: \"page\", data: $d) { id } }",
                        "variables": {"d": {"slug": f"page-{i}", "title": f"Page {i}", "body": body[:200], "rank": i}}})
        created = gql_batch(url, live, ops)
        new_ids = [c["createRecord"]["id"] for c in created]
        pubs = [{"query": "mutation($id: ID!) { publishRecord(id: $id) { id } }", "variables": {"id": i}} for i in new_ids]
        gql_batch(url, live, pubs)
        ids.extend(new_ids)
    log(f"seeded {records} published records in {time.time() - t0:.1f} s")
    t0 = time.time()
    public = []
    for start in range(0, keys, batch):
        ops = [{"query": "mutation($n: String!) { createApiKey(input: {name: $n, type: PUBLIC, mode: LIVE, scopes: [\"records:read\"], rateLimitPerHour: 10000000}) { key } }",
                "variables": {"n": f"bench-{i}"}} for i in range(start, min(start + batch, keys))]
        public.extend(c["createApiKey"]["key"] for c in gql_batch(url, live, ops))
    secret = gql(url, root, "mutation { createApiKey(input: {name: \"bench-secret\", type: SECRET, mode: TEST, scopes: [\"*\"], rateLimitPerHour: 10000000}) { key } }")["createApiKey"]["key"]
    log(f"seeded {keys} keys in {time.time() - t0:.1f} s")
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


def write_mix(path, entries):
    """entries: (cumulative weight, key, json body) lines."""
    total = 0
    with open(path, "w") as f:
        for weight, key, body in entries:
            total += weight
            f.write(f"{total}\t{key}\t{json.dumps(body)}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--short", action="store_true", help="tiny data, one short round: proves the harness works")
    ap.add_argument("--records", type=int)
    ap.add_argument("--keys", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="comma-separated mixes to run (baselines always run)")
    ap.add_argument("--soak", type=int, help="seconds of the memory soak at saturation (0: none)")
    ap.add_argument("--warmup", type=int, help="seconds of load before the soak's first RSS reading")
    args = ap.parse_args()
    records = args.records or (300 if args.short else 100_000)
    keys = args.keys or (20 if args.short else 10_000)
    rounds = args.rounds or (1 if args.short else 5)
    seconds = args.seconds or (2 if args.short else 10)
    soak = args.soak if args.soak is not None else (3 if args.short else 300)
    warmup = args.warmup if args.warmup is not None else (1 if args.short else 30)
    log = lambda m: print(f"# {m}", file=sys.stderr, flush=True)

    work = tempfile.mkdtemp(prefix="quire-perf-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, QUIRE_LISTEN=f"127.0.0.1:{port}",
               QUIRE_DATABASE_URL=f"sqlite://{work}/perf.db?mode=rwc", RUST_LOG="warn",
               QUIRE_MAX_BATCH="10")
    env.pop("QUIRE_REDIS_URL", None)
    server = subprocess.Popen([os.path.abspath(args.bin), "serve"], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=open(f"{work}/server.log", "w"), text=True)
    try:
        root = None
        deadline = time.time() + 30
        while time.time() < deadline and root is None:
            line = server.stdout.readline()
            if line.startswith("sk_test_"):
                root = line.strip()
        if root is None:
            raise SystemExit("quire did not print its bootstrap key")
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("quire did not become healthy")
                time.sleep(0.05)
        idle_rss = proc_status(server.pid, "VmRSS")
        # TEST keys manage TEST keys only: the live key that mints the
        # pk_live_ keys comes from the operator command, as for a user.
        live = json.loads(subprocess.run(
            [os.path.abspath(args.bin), "admin", "keys", "create", "--project", "default", "--name", "bench-live",
             "--type", "secret", "--mode", "live", "--scopes", "*", "--rate-limit", "10000000", "--json"],
            env=env, cwd=work, capture_output=True, text=True, check=True).stdout)["key"]
        ids, public, secret = seed(url, root, live, records, keys, log)
        rng = random.Random(7)
        lua = os.path.join(work, "mix.lua")
        with open(lua, "w") as f:
            f.write(LUA)

        def reads(n):
            return [(1, rng.choice(public), b) for b in n]

        list_q = {"query": "{ records(modelKey: \"page\", limit: 10) { items { id data } } }"}
        typename = {"query": "{ __typename }"}
        mixes = {
            "graphql floor: { __typename }": [(1, k, typename) for k in public[:200]],
            "records(limit: 10)": [(1, k, list_q) for k in public[:200]],
            "record(id)": [(1, rng.choice(public), {"query": "query($id: ID!) { record(id: $id) { id data } }", "variables": {"id": i}})
                           for i in rng.sample(ids, min(500, len(ids)))],
            "records where unique": [(1, rng.choice(public), {"query": "query($w: JSON) { records(modelKey: \"page\", where: $w) { items { id data } } }",
                                                              "variables": {"w": {"slug": f"page-{rng.randrange(records)}"}}}) for _ in range(500)],
            "records preview": [(1, secret, {"query": "{ records(modelKey: \"page\", limit: 10, preview: true) { items { id data } } }"})],
            "updateRecord + publishRecord": [(1, secret, {"query": "mutation($id: ID!, $d: JSON!) { u: updateRecord(id: $id, data: $d) { version } p: publishRecord(id: $id) { id } }",
                                                          "variables": {"id": i, "d": {"slug": f"page-upd-{n}", "title": "updated", "rank": n}}})
                                             for n, i in enumerate(rng.sample(ids, min(200, len(ids))))],
        }
        # createRecord under load: a model without unique fields, so every
        # request can carry the same body.
        gql(url, root, """mutation { createModel(input: {key: "note", name: "Note", fields: [
            {name: "title", type: STRING, required: true}, {name: "body", type: TEXT}]}) { key } }""")
        mixes["createRecord"] = [(1, secret, {"query": "mutation($d: JSON!) { createRecord(modelKey: \"note\", data: $d) { id } }",
                                              "variables": {"d": {"title": "new note", "body": "x" * 200}}})]
        mixes["95% reads / 5% writes"] = (
            [(19, k, list_q) for k in public[:50]]
            + [(1, secret, {"query": "mutation($d: JSON!) { createRecord(modelKey: \"note\", data: $d) { id } }",
                            "variables": {"d": {"title": "mixed", "body": "y" * 200}}})] * 50)
        # The soak: every read kind and both write kinds at once, so the read
        # cache fills and is invalidated while records keep being added.
        soak_mix = ([(40, k, list_q) for k in public[:20]] + mixes["record(id)"] * 2 + mixes["records where unique"]
                    + [(5, secret, b) for _, _, b in mixes["createRecord"]]
                    + [(1, k, b) for _, k, b in mixes["updateRecord + publishRecord"][:20]])
        if args.only:
            keep = set(args.only.split(","))
            mixes = {k: v for k, v in mixes.items() if k in keep or k.startswith("graphql floor")}

        results = {name: [] for name in ["http floor: GET /healthz", *mixes]}
        peak = 0
        for r in range(rounds):
            for name in results:
                if name.startswith("http floor"):
                    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
                           "-s", os.path.join(HERE, "done.lua"), url + "/healthz"]
                else:
                    path = os.path.join(work, "mix.txt")
                    write_mix(path, mixes[name])
                    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
                           "-s", lua, url + "/graphql", "--", path]
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
                peak = max(peak, proc_status(server.pid, "VmHWM"))
                log(f"round {r + 1} {name}: {m['rps']:.0f} req/s, non-2xx {m['non2xx']}, errors {m['errors']}")

        soak_rows = []
        if soak > 0:
            path = os.path.join(work, "mix.txt")
            write_mix(path, soak_mix)
            total = warmup + soak
            cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{total}s",
                   "-s", lua, url + "/graphql", "--", path]
            log(f"soak: {warmup} s warm-up, then {soak} s at saturation")
            wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            t0 = time.time()
            time.sleep(warmup)
            after_warmup = proc_status(server.pid, "VmRSS")
            anon_after_warmup = proc_status(server.pid, "RssAnon")
            step = max(1, soak // 10)
            while time.time() - t0 < total - 0.5:
                time.sleep(min(step, max(0.1, total - (time.time() - t0) - 0.5)))
                soak_rows.append((time.time() - t0, proc_status(server.pid, "VmRSS"),
                                  proc_status(server.pid, "RssAnon"), proc_status(server.pid, "RssFile"),
                                  proc_status(server.pid, "RssShmem")))
            out, _ = wrk.communicate(timeout=120)
            line = next((l for l in out.splitlines() if l.startswith("JSON ")), None)
            soak_summary = json.loads(line[5:]) if line else {}
            end_rss = soak_rows[-1][1] if soak_rows else after_warmup
            peak = max(peak, proc_status(server.pid, "VmHWM"))

        med = {n: {k: statistics.median(x[k] for x in runs) for k in ("rps", "p50", "p99", "cpu_us", "non2xx", "errors")}
               for n, runs in results.items()}
        http = med["http floor: GET /healthz"]["rps"]
        floor = med["graphql floor: { __typename }"]["rps"]
        print(f"\nquire load benchmark: {records} records, {keys} keys, {rounds} rounds x {seconds} s, "
              f"{args.connections} connections, wrk -t{args.threads}; medians")
        print(f"{'mix':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'non-2xx':>8} {'vs GraphQL floor':>17} {'vs HTTP floor':>14}")
        for name, m in med.items():
            print(f"{name:34} {m['rps']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f} {m['cpu_us']:10.1f} {m['non2xx']:8.0f} "
                  f"{m['rps'] / floor:17.2f} {m['rps'] / http:14.2f}")
        print(f"server RSS: idle after start {idle_rss / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
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
        metrics = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
        cache = {l.split()[0]: l.split()[1] for l in metrics.splitlines()
                 if l.startswith("quire_read_cache") and not l.startswith("#")}
        if cache:
            print("read cache: " + ", ".join(f"{k} {v}" for k, v in sorted(cache.items())))
        bad = [n for n, m in med.items() if m["errors"] > 0 or m["non2xx"] > 0]
        if bad:
            print(f"mixes with errors or non-2xx responses: {', '.join(bad)}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
