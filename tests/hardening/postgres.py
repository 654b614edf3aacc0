"""PostgreSQL frozen, refusing, or slow, behind a TCP proxy this test controls.

Bounds (issue 11): while the database is frozen no request takes longer than
7 s; `/readyz` answers within 1 s; a 503 carries `Retry-After`; once the
database refuses connections, 503s come at once; service recovers within 2 s
of the thaw; a statement stuck behind a lock is abandoned at the statement
timeout without taking the instance down; every acknowledged write survives.
Skipped without QUIRE_TEST_DATABASE_URL.
"""
import os
import select
import socket
import sys
import threading
import time
import urllib.parse

from common import (PG_URL, Checks, FreshPg, Quire, codes, free_port, gql, percentile,
                    request, well_formed_key)


class Proxy:
    """Forwards 127.0.0.1:port to the PostgreSQL server; can freeze (bytes stop
    moving, sockets stay open), refuse (nothing listens) and come back."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.port = free_port()
        self.frozen = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.socks = []
        self.listener = None
        self.listen()

    def listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener):
        while not self.stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a, b):
        peers = {a: b, b: a}
        try:
            while not self.stopped.is_set():
                if self.frozen.is_set():
                    time.sleep(0.02)
                    continue
                readable, _, _ = select.select([a, b], [], [], 0.1)
                if self.frozen.is_set():
                    continue
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()

    def freeze(self):
        self.frozen.set()

    def thaw(self):
        self.frozen.clear()

    def refuse(self):
        """Stops listening and cuts every connection: connects are refused."""
        try:
            # Wakes the thread blocked in accept(); close() alone would not.
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.socks = []

    def close(self):
        self.stopped.set()
        self.refuse()


class Load:
    """Clients in threads, each timing every request until stopped."""

    def __init__(self, q, jobs):
        self.q = q
        self.results = []  # (kind, started, seconds, status, retry_after)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(kind, fn), daemon=True)
                        for kind, fn in jobs]

    def _run(self, kind, fn):
        while not self.stop.is_set():
            t0 = time.time()
            try:
                status, headers = fn()
            except OSError:
                status, headers = -1, {}
            self.results.append((kind, t0, time.time() - t0, status,
                                 headers.get("retry-after")))
            # Readers go back at once, so a freeze catches some mid-query.
            time.sleep(0.0 if kind == "read" else 0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)


def main():
    c = Checks("postgres")
    if not PG_URL:
        print("postgres: skipped (QUIRE_TEST_DATABASE_URL is not set)")
        return
    binary = os.environ["QUIRE_BIN"]
    pg = FreshPg()
    parsed = urllib.parse.urlparse(PG_URL)
    proxy = Proxy((parsed.hostname or "127.0.0.1", parsed.port or 5432))
    via_proxy = f"postgres://{parsed.username or 'postgres'}@127.0.0.1:{proxy.port}/{pg.name}"
    q = Quire(binary, database_url=via_proxy)
    locker = None
    try:
        q.start()
        root = q.root
        status, _, body = q.gql(root, """mutation { createModel(input: {key: "note", name: "Note",
            fields: [{name: "title", type: STRING, required: true}]}) { key } }""")
        assert status == 200 and not body.get("errors"), body
        reader = q.new_key(root, type_="PUBLIC", mode="TEST", scopes=["records:read"],
                           limit=10_000_000)
        acknowledged = []

        def read():
            s, h, _ = gql(q.port, reader, '{ records(modelKey: "note") { totalCount } }',
                          timeout=30)
            return s, h

        def write():
            title = f"w-{time.time_ns()}"
            s, h, b = gql(q.port, root, 'mutation($t: JSON!) { createRecord(modelKey: "note", '
                          'data: $t) { id } }', {"t": {"title": title}}, timeout=30)
            if s == 200 and b and not b.get("errors"):
                acknowledged.append(b["data"]["createRecord"]["id"])
            return s, h

        def fresh_key():
            # A key this instance has never seen: its lookup needs the database.
            s, h, _ = gql(q.port, well_formed_key(), "{ __typename }", timeout=30)
            return s, h

        def ready():
            s, h, _ = request(q.port, "GET", "/readyz", timeout=30)
            return s, h

        jobs = [("read", read), ("read", read), ("write", write), ("auth", fresh_key),
                ("readyz", ready)]

        # --- frozen: bytes stop moving, sockets stay open ---
        with Load(q, jobs) as load:
            time.sleep(1.0)
            proxy.freeze()
            frozen_at = time.time()
            time.sleep(12.0)
            proxy.thaw()
            thawed_at = time.time()
            recovered_at = wait_recovered(read, 10.0)
            time.sleep(0.5)
        during = [r for r in load.results if r[1] >= frozen_at - 0.5 and r[1] < thawed_at]
        worst = max((r[2] for r in during), default=0.0)
        c.figure("requests during the 12 s freeze", len(during))
        c.figure("statuses during the freeze", statuses(during))
        c.figure("slowest request during the freeze (s)", round(worst, 2))
        c.check(worst <= 7.0, f"no request takes longer than 7 s while frozen (slowest {worst:.2f} s)")
        readyz = [r[2] for r in during if r[0] == "readyz"]
        c.figure("slowest /readyz during the freeze (s)", round(max(readyz, default=0), 2))
        c.check(bool(readyz) and max(readyz) <= 1.2, "/readyz answers within 1 s while frozen")
        unavailable = [r for r in during if r[3] == 503]
        c.check(len(unavailable) > 0, "the freeze is answered with 503")
        c.check(bool(unavailable) and all(r[4] for r in unavailable),
                "every 503 carries Retry-After")
        refused_fast = [r[2] for r in during if r[3] == 503 and r[1] > frozen_at + 8]
        c.figure("p50 of 503s in the freeze's last 4 s (s)", round(percentile(refused_fast, 50), 3))
        recovery = (recovered_at - thawed_at) if recovered_at else float("inf")
        c.figure("recovery after the thaw (s)", round(recovery, 2))
        c.check(recovery <= 2.0, f"service recovers within 2 s of the thaw ({recovery:.2f} s)")

        # --- refusing: nothing listens ---
        with Load(q, jobs) as load:
            time.sleep(1.0)
            proxy.refuse()
            down_at = time.time()
            time.sleep(8.0)
            proxy.listen()
            back_at = time.time()
            recovered_at = wait_recovered(read, 10.0)
            time.sleep(0.5)
        during = [r for r in load.results if down_at + 2 <= r[1] < back_at]
        durations = [r[2] for r in during]
        c.figure("requests while refused (after the first 2 s)", len(during))
        c.figure("statuses while refused", statuses(during))
        c.figure("p50 / max while refused (s)",
                 (round(percentile(durations, 50), 3), round(max(durations, default=0), 3)))
        c.check(bool(during) and all(r[3] == 503 for r in during if r[0] != "readyz")
                and all(r[3] == 503 for r in during if r[0] == "readyz"),
                "every request gets 503 while the database refuses connections")
        c.check(bool(durations) and percentile(durations, 50) < 0.1,
                "a refused database is answered at once (p50 under 100 ms)")
        c.check(any(r[3] == 503 for r in during) and all(r[4] for r in during if r[3] == 503),
                "every 503 carries Retry-After")
        recovery = (recovered_at - back_at) if recovered_at else float("inf")
        c.figure("recovery after the database is back (s)", round(recovery, 2))
        c.check(recovery <= 2.0, f"service recovers within 2 s ({recovery:.2f} s)")

        # --- a statement stuck behind a lock: the statement timeout ---
        import subprocess
        locker = subprocess.Popen(["psql", pg.url, "-qc",
                                   "BEGIN; LOCK TABLE records IN ACCESS EXCLUSIVE MODE; "
                                   "SELECT pg_sleep(12); COMMIT;"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        t0 = time.time()
        # A preview: the read cache (on for PostgreSQL without Redis, and
        # exact: the lock holder changed nothing) cannot answer it.
        s, h, b = gql(q.port, root, '{ records(modelKey: "note", preview: true) { totalCount } }',
                      timeout=30)
        took = time.time() - t0
        c.figure("a read behind a held lock", (s, codes(b), round(took, 2)))
        c.check(s == 503 and "SERVICE_UNAVAILABLE" in codes(b) and took <= 7.0,
                "a statement past QUIRE_DB_TIMEOUT_SECONDS is abandoned with 503")
        s, _, b = q.gql(reader, "{ viewer { project { name } } }")
        c.check(s == 200 and not (b or {}).get("errors"),
                "meanwhile other requests are served (one slow statement does not take the instance down)")
        locker.wait(timeout=20)
        locker = None

        # --- nothing acknowledged was lost ---
        s, _, b = q.gql(root, '{ records(modelKey: "note", preview: true, limit: 1) { totalCount } }')
        total = b["data"]["records"]["totalCount"] if s == 200 and b.get("data") else -1
        missing = []
        for rid in acknowledged:
            s, _, b = q.gql(root, 'query($id: ID!) { record(id: $id, preview: true) { id } }',
                            {"id": rid})
            if not (s == 200 and b.get("data", {}).get("record")):
                missing.append(rid)
        c.figure("acknowledged writes / records stored / missing",
                 (len(acknowledged), total, len(missing)))
        c.check(not missing, "every acknowledged write is stored")
    finally:
        if locker:
            locker.kill()
        q.stop()
        proxy.close()
        pg.drop()
    c.done()


def statuses(results):
    """{kind: {status: count}} of some results."""
    out = {}
    for kind, _, _, status, _ in results:
        out.setdefault(kind, {}).setdefault(status, 0)
        out[kind][status] += 1
    return out


def wait_recovered(read, limit):
    """The time at which a read first succeeds again (None if not within `limit`)."""
    end = time.time() + limit
    while time.time() < end:
        try:
            status, _ = read()
            if status == 200:
                return time.time()
        except OSError:
            pass
        time.sleep(0.05)
    return None


if __name__ == "__main__":
    sys.exit(main())
