"""Shutdown with a deadline (issue 11): SIGTERM with a half-open connection
and a request whose body stalls exits 0 within 12 s; the rate-limit windows
survive SIGTERM (saved before the drain, so an orchestrator's SIGKILL after
its own deadline does not lose them), survive a `kill -9` after a periodic
save, and loading them does not consume them.

  QUIRE_BIN=target/release/quire python3 tests/hardening/shutdown.py

Like an orchestrator, the script sends SIGKILL to a quire that has not
exited 12 s after SIGTERM.
"""
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Checks, Quire, request  # noqa: E402

LIMIT = 1000
ORCHESTRATOR_GRACE = 12   # seconds between SIGTERM and SIGKILL
QUERY = b'{"query":"{ __typename }"}'


def binary():
    path = os.environ.get("QUIRE_BIN", "target/release/quire")
    if not os.path.exists(path):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        path = os.path.join(root, path)
    return path


def spend(q, key, n):
    """`n` requests with `key`; the last X-RateLimit-Remaining."""
    remaining = None
    for _ in range(n):
        status, headers, _ = request(q.port, "POST", "/graphql", QUERY, {
            "content-type": "application/json", "x-api-key": key}, timeout=10)
        if status == 200:
            remaining = int(headers["x-ratelimit-remaining"])
    return remaining


def half_open(q):
    s = socket.create_connection(("127.0.0.1", q.port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    return s


def slow_body(q, key):
    s = socket.create_connection(("127.0.0.1", q.port))
    s.sendall(b"POST /graphql HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
              b"x-api-key: " + key.encode() + b"\r\ncontent-length: 1000\r\n\r\n{\"query\":")
    return s


def terminate(q):
    """SIGTERM, then SIGKILL after ORCHESTRATOR_GRACE s: (exit status, seconds,
    whether it had to be killed)."""
    t = time.monotonic()
    q.signal(signal.SIGTERM)
    status = q.wait(ORCHESTRATOR_GRACE)
    took = time.monotonic() - t
    if status is None:
        q.stop()
        return q.proc.returncode, took, True
    return status, took, False


def restart(path, before, env=None):
    return Quire(path, database_url=before.database_url, workdir=before.dir, env=env).start()


def sigterm_with_stragglers(c, path):
    q = Quire(path).start()
    socks = []
    try:
        key = q.admin_key(limit=LIMIT)
        assert spend(q, key, 1) == LIMIT - 1
        socks = [half_open(q), slow_body(q, key)]
        time.sleep(0.5)
        status, took, killed = terminate(q)
        c.figure("(a) SIGTERM with a half-open connection and a stalled body",
                 f"SIGKILLed after {took:.1f} s" if killed
                 else f"exited {status} after {took:.1f} s")
        c.check(not killed and status == 0 and took <= 12,
                "(a) SIGTERM exits 0 within 12 s despite a half-open connection")
    finally:
        for s in socks:
            s.close()
        q.stop()


def windows_survive_sigterm(c, path):
    q = Quire(path).start()
    q2 = q3 = None
    socks = []
    try:
        key = q.admin_key(limit=LIMIT)
        before = spend(q, key, 400)
        socks = [half_open(q)]
        status, took, killed = terminate(q)
        c.figure("(b) remaining before SIGTERM", before)
        c.figure("(b) stop", f"SIGKILLed after {took:.1f} s" if killed
                 else f"exited {status} after {took:.1f} s")
        q2 = restart(path, q)
        after = spend(q2, key, 1)
        c.figure("(b) remaining after the restart (one more request)", after)
        c.check(after == before - 1,
                f"(b) a restart continues from X-RateLimit-Remaining {before} (got {after})")
        # Restoring does not consume: a crash right after the restart (no
        # save since) still finds the windows.
        q2.stop()
        q3 = restart(path, q)
        again = spend(q3, key, 1)
        c.figure("(b) remaining after kill -9 of the restarted instance and another restart",
                 again)
        c.check(again == before - 1,
                f"(b) loading the windows did not consume them (expected {before - 1}, "
                f"got {again})")
    finally:
        for s in socks:
            s.close()
        for x in (q, q2, q3):
            if x:
                x.stop()


def windows_survive_kill9(c, path):
    env = {"QUIRE_RATE_LIMIT_SAVE_SECONDS": "2"}
    q = Quire(path, env=env).start()
    q2 = None
    try:
        key = q.admin_key(limit=LIMIT)
        before = spend(q, key, 100)
        time.sleep(3.5)   # at least one periodic save
        q.stop()          # kill -9
        q2 = restart(path, q, env=env)
        after = spend(q2, key, 1)
        c.figure("(c) remaining before kill -9 / after restart", f"{before} / {after}")
        c.check(after == before - 1,
                f"(c) kill -9 after a periodic save keeps the count (expected {before - 1}, "
                f"got {after})")
    finally:
        for x in (q, q2):
            if x:
                x.stop()


def main():
    c = Checks("shutdown")
    path = binary()
    sigterm_with_stragglers(c, path)
    windows_survive_sigterm(c, path)
    windows_survive_kill9(c, path)
    c.done()


if __name__ == "__main__":
    main()
