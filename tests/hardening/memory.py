"""Memory under hostile public-key traffic (issue 11, "Bound the work a
request can cause, before the work").

A fresh quire with 30 published records of about 1 MB; a `pk_test_` key
holding `records:read` (what any website ships in its JavaScript). Waves of
32 concurrent hostile requests, each kind in turn and then mixed:

- `in`:      a `where` whose `in` lists 100,000 values, in variables (~1 MiB body);
- `aliases`: 15,000 aliased fields (~1 MiB of query text);
- `large`:   every record with its data (a ~29 MiB answer), each request
             with its own operation name so the read cache cannot share them.

RSS is sampled every 20 ms. Bounds: peak under 256 MiB, and after a few
seconds idle RSS is back within 64 MiB of where it started.

    QUIRE_BIN=target/release/quire python3 tests/hardening/memory.py
"""
import http.client
import json
import os
import random
import string
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Checks, Quire, codes, rss_kib  # noqa: E402

CONCURRENCY = 32
RECORDS = 30
RECORD_BYTES = 1_000_000
ROUNDS = 2
PEAK_MIB = 256
RETURN_MIB = 64
IDLE_SECONDS = 20
# A binary without the bounds can take gigabytes: stop it before it takes
# the machine with it (the figure then reads "over the ceiling").
CEILING_MIB = 4096


class Sampler(threading.Thread):
    """Samples a process's RSS every 20 ms; kills it past the ceiling."""

    def __init__(self, quire):
        super().__init__(daemon=True)
        self.quire = quire
        self.peak_kib = 0
        self.running = True
        self.killed = False

    def run(self):
        while self.running:
            kib = rss_kib(self.quire.pid)
            self.peak_kib = max(self.peak_kib, kib)
            if kib > CEILING_MIB * 1024 and not self.killed:
                self.killed = True
                self.quire.stop()
            time.sleep(0.02)


def post(port, key, payload, keep=4096, timeout=120.0):
    """POSTs a JSON body; reads the answer in chunks, keeping only its
    first `keep` bytes: (status, length, head bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/graphql", body=payload, headers={
            "content-type": "application/json", "x-api-key": key})
        r = conn.getresponse()
        head, length = b"", 0
        while True:
            chunk = r.read(1 << 16)
            if not chunk:
                break
            if len(head) < keep:
                head += chunk[: keep - len(head)]
            length += len(chunk)
        return r.status, length, head
    except OSError as e:
        return None, 0, str(e).encode()
    finally:
        conn.close()


def in_list(n):
    # 100,000 short strings: about 0.9 MiB, under the 1 MiB body limit.
    values = [f"{i:x}" for i in range(100_000)]
    return json.dumps({
        "query": "query($w: JSON) { records(modelKey: \"blob\", where: $w) { items { id } } }",
        "variables": {"w": {"slug": {"in": values}}},
    }, separators=(",", ":")).encode()


def aliases(n):
    fields = " ".join(f"a{i:05d}: records(modelKey: \"blob\") {{ totalCount }}"
                      for i in range(15_000))  # about 0.7 MiB of query text
    return json.dumps({"query": "{ %s }" % fields}).encode()


SERIAL = iter(range(1 << 30))


def large(n):
    # A name of its own: the read cache never holds this answer for another.
    return json.dumps({
        "query": "query Q%d { records(modelKey: \"blob\", limit: %d) { items { id data } } }"
                 % (next(SERIAL), RECORDS),
    }).encode()


KINDS = {"in": in_list, "aliases": aliases, "large": large}


def outcome(status, length, head):
    """A short description of one answer: status and first error code."""
    if status is None:
        return "connection error"
    try:
        body = json.loads(head) if length <= len(head) else None
    except ValueError:
        body = None
    if body is None:
        shape = "data" if head.startswith(b'{"data":{') else "?"
        return f"{status} {shape} ({length >> 20} MiB)"
    found = codes(body)
    return f"{status} {found[0] if found else 'data'}"


def wave(q, key, makers):
    """Fires one request per maker at once; returns their outcomes."""
    payloads = [make(i) for i, make in enumerate(makers)]
    results = [None] * len(payloads)

    def one(i):
        results[i] = outcome(*post(q.port, key, payloads[i]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    return results


def seed(q):
    status, _, body = q.gql(q.root, 'mutation { createModel(input: { key: "blob", name: "Blob", '
                            'fields: [{ name: "slug", type: STRING, unique: true }, '
                            '{ name: "body", type: TEXT }] }) { key } }')
    assert status == 200 and not body.get("errors"), body
    rng = random.Random(11)
    for i in range(RECORDS):
        text = "".join(rng.choices(string.ascii_letters + string.digits, k=RECORD_BYTES))
        status, _, body = q.gql(q.root, 'mutation($d: JSON!) { createRecord(modelKey: "blob", '
                                'data: $d) { id } }', {"d": {"slug": f"r{i}", "body": text}},
                                timeout=120)
        assert status == 200 and not body.get("errors"), (status, body)
        rid = body["data"]["createRecord"]["id"]
        status, _, body = q.gql(q.root, 'mutation($id: ID!) { publishRecord(id: $id) { id } }',
                                {"id": rid}, timeout=120)
        assert status == 200 and not body.get("errors"), (status, body)


def main():
    checks = Checks("memory")
    # Extra settings for experiments, e.g. MEMORY_QUIRE_ENV='{"QUIRE_READ_CACHE_MB": "0"}'.
    extra = json.loads(os.environ.get("MEMORY_QUIRE_ENV", "{}"))
    q = Quire(os.environ["QUIRE_BIN"], env=extra).start()
    sampler = None
    try:
        seed(q)
        key = q.new_key(q.root, type_="PUBLIC", mode="TEST", scopes=["records:read"],
                        limit=1_000_000)
        time.sleep(2)
        start = q.rss_mib()
        checks.figure("RSS at start (MiB)", f"{start:.0f}")
        sampler = Sampler(q)
        sampler.start()
        t0 = time.time()
        plan = []
        for _ in range(ROUNDS):
            for name, make in KINDS.items():
                plan.append((name, [make] * CONCURRENCY))
        mixed = [KINDS[k] for k in ("in", "aliases", "large")] * (CONCURRENCY // 3 + 1)
        plan.append(("mixed", mixed[:CONCURRENCY]))
        for name, makers in plan:
            if sampler.killed:
                break
            w0 = time.time()
            results = wave(q, key, makers)
            summary = {}
            for r in results:
                summary[r] = summary.get(r, 0) + 1
            checks.figure(f"wave {name} ({time.time() - w0:.1f} s, peak so far "
                          f"{sampler.peak_kib / 1024:.0f} MiB)", summary)
        checks.figure("hostile waves took (s)", f"{time.time() - t0:.1f}")
        peak = sampler.peak_kib / 1024
        time.sleep(5)
        checks.figure("RSS after 5 s idle (MiB)", f"{q.rss_mib():.0f}")
        final = q.rss_mib()
        idle_end = time.time() + IDLE_SECONDS
        while not sampler.killed and final - start > RETURN_MIB and time.time() < idle_end:
            time.sleep(0.5)
            final = q.rss_mib()
        sampler.running = False
        checks.figure("peak RSS (MiB)", f"{peak:.0f}" + (" (killed at the ceiling)"
                                                          if sampler.killed else ""))
        checks.figure("RSS after idle (MiB)", f"{final:.0f}")
        checks.check(not sampler.killed and peak < PEAK_MIB,
                     f"peak RSS {peak:.0f} MiB < {PEAK_MIB} MiB")
        checks.check(not sampler.killed and final - start <= RETURN_MIB,
                     f"RSS after idle {final:.0f} MiB within {RETURN_MIB} MiB of start {start:.0f} MiB")
        checks.check(q.healthy(), "still answers /healthz")
    finally:
        if sampler:
            sampler.running = False
        q.stop()
    checks.done()


if __name__ == "__main__":
    main()
