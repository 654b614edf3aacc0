"""Slow clients (issue 11, "Connections"): a connection whose headers never
finish is closed, /healthz keeps answering while 5,000 such connections are
open, and a low QUIRE_MAX_CONNECTIONS is logged, counted and recovered from.

  QUIRE_BIN=target/release/quire python3 tests/hardening/slowloris.py

The slow clients run in a child process of this script (`attack` mode,
asyncio), so the /healthz probes measured here do not share an interpreter
with 5,000 sockets.
"""
import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Checks, Quire, open_fds, percentile, request  # noqa: E402

SLOW = 5_000              # slow connections held open in (b)
ATTACK_SECONDS = 30       # how long (b) keeps them open
CAP = 200                 # QUIRE_MAX_CONNECTIONS in (c)
CAP_SLOW = 400            # slow connections against that cap
FD_LIMIT = 300            # RLIMIT_NOFILE (soft and hard) in (d)


def binary():
    path = os.environ.get("QUIRE_BIN", "target/release/quire")
    if not os.path.exists(path):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        path = os.path.join(root, path)
    return path


# --- the attacker (child process) -------------------------------------------

async def attack(port, count, seconds, reconnect):
    """Holds `count` connections that each send a request line and then one
    header byte every 2 s; with `reconnect`, replaces each one the server
    closes until `seconds` have passed. Prints what happened as JSON."""
    end = time.monotonic() + seconds
    lifetimes = []          # seconds from open to the server's close
    stats = {"opened": 0, "connect_errors": 0, "closed_by_server": 0}
    opened_all = asyncio.Event()

    async def one(i):
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), timeout=5)
            except (OSError, asyncio.TimeoutError):
                stats["connect_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["opened"] += 1
            if stats["opened"] >= count:
                opened_all.set()
            started = time.monotonic()
            closed = False
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                await writer.drain()
                while time.monotonic() < end:
                    try:
                        data = await asyncio.wait_for(reader.read(1024), timeout=2)
                    except asyncio.TimeoutError:
                        writer.write(b"a")
                        await writer.drain()
                        continue
                    if not data:
                        closed = True
                        break
            except (ConnectionError, OSError):
                closed = True
            finally:
                writer.close()
            if closed:
                stats["closed_by_server"] += 1
                lifetimes.append(time.monotonic() - started)
            if not reconnect:
                break
        return

    t0 = time.monotonic()
    tasks = []
    for i in range(count):
        tasks.append(asyncio.ensure_future(one(i)))
        if i % 200 == 199:
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(opened_all.wait(), timeout=seconds)
        stats["all_open_after_s"] = round(time.monotonic() - t0, 2)
    except asyncio.TimeoutError:
        stats["all_open_after_s"] = None
    await asyncio.wait(tasks, timeout=seconds + 10)
    lifetimes.sort()
    stats["close_after_s"] = {
        "min": round(lifetimes[0], 1) if lifetimes else None,
        "p50": round(lifetimes[len(lifetimes) // 2], 1) if lifetimes else None,
        "max": round(lifetimes[-1], 1) if lifetimes else None,
    }
    print(json.dumps(stats), flush=True)


def start_attack(port, count, seconds, reconnect):
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "attack", str(port),
                             str(count), str(seconds), "1" if reconnect else "0"],
                            stdout=subprocess.PIPE, text=True)


def attack_result(proc, timeout):
    try:
        out, _ = proc.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        proc.kill()
        proc.wait()
        return {}


# --- the scenarios -----------------------------------------------------------

def probe(port, timeout=5.0):
    """Seconds /healthz took on a fresh connection (None if it failed)."""
    t = time.monotonic()
    try:
        status, _, _ = request(port, "GET", "/healthz", timeout=timeout)
    except OSError:
        return None
    return time.monotonic() - t if status == 200 else None


def partial_header(c, q):
    s = socket.create_connection(("127.0.0.1", q.port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
    s.settimeout(20)
    t = time.monotonic()
    closed = False
    try:
        closed = s.recv(1024) == b""
    except ConnectionError:
        closed = True
    except socket.timeout:
        pass
    took = time.monotonic() - t
    s.close()
    c.figure("(a) partial-header connection closed by the server after",
             f"{took:.1f} s" if closed else f"never (still open after {took:.0f} s)")
    c.check(closed and took <= 15, "(a) a partial-header connection is closed within 15 s")


def many_slow(c, q):
    attacker = start_attack(q.port, SLOW, ATTACK_SECONDS, reconnect=True)
    latencies, failures, fds = [], 0, []
    time.sleep(3)      # let the connections open
    end = time.monotonic() + ATTACK_SECONDS - 5
    while time.monotonic() < end:
        took = probe(q.port, timeout=5)
        if took is None:
            failures += 1
        else:
            latencies.append(took)
        fds.append(open_fds(q.pid))
        time.sleep(0.5)
    stats = attack_result(attacker, ATTACK_SECONDS + 30)
    c.figure("(b) slow connections opened (with reconnects)", stats.get("opened"))
    c.figure("(b) all 5,000 open after", f"{stats.get('all_open_after_s')} s")
    c.figure("(b) closed by the server", stats.get("closed_by_server"))
    c.figure("(b) closed after (s) min/p50/max", stats.get("close_after_s"))
    c.figure("(b) connect errors", stats.get("connect_errors"))
    c.figure("(b) quire open fds max", max(fds) if fds else None)
    c.figure("(b) /healthz probes", f"{len(latencies)} ok, {failures} failed")
    if latencies:
        c.figure("(b) /healthz ms p50/p99/max",
                 f"{percentile(latencies, 50) * 1000:.1f} / "
                 f"{percentile(latencies, 99) * 1000:.1f} / {max(latencies) * 1000:.1f}")
    c.check(stats.get("all_open_after_s") is not None, "(b) 5,000 slow connections were open")
    c.check(len(latencies) >= 10 and failures == 0 and max(latencies) < 1.0,
            "(b) /healthz answers within 1 s while 5,000 slow connections are open")
    closed = stats.get("closed_by_server") or 0
    c.check(closed >= SLOW * 0.9, "(b) the server closes the slow connections")
    c.check(q.proc.poll() is None, "(b) quire is still running")


def capped(c, binary_path):
    q = Quire(binary_path, env={"QUIRE_MAX_CONNECTIONS": str(CAP)}).start()
    try:
        t0 = time.monotonic()
        attacker = start_attack(q.port, CAP_SLOW, 25, reconnect=False)
        time.sleep(2)
        # At the cap, a new client waits in the backlog...
        blocked = probe(q.port, timeout=1.5)
        c.figure("(c) /healthz at the cap",
                 "no answer within 1.5 s" if blocked is None else f"{blocked * 1000:.0f} ms")
        c.check(blocked is None, "(c) at the cap a new connection waits (the cap holds)")
        # ...until the slow ones are dropped: then service resumes.
        resumed_at = None
        while time.monotonic() - t0 < 45:
            took = probe(q.port, timeout=2)
            if took is not None and took < 1.0:
                resumed_at = time.monotonic() - t0
                break
            time.sleep(0.25)
        c.figure("(c) service resumed after", f"{resumed_at:.1f} s" if resumed_at else "never")
        stats = attack_result(attacker, 45)
        c.figure("(c) slow connections closed by the server",
                 f"{stats.get('closed_by_server')} of {CAP_SLOW}")
        quick = [probe(q.port, timeout=2) for _ in range(5)]
        c.check(resumed_at is not None and all(t is not None and t < 1.0 for t in quick),
                "(c) service resumes once the slow connections are dropped")
        try:
            _, _, metrics = request(q.port, "GET", "/metrics", timeout=5)
            metrics = metrics.decode()
        except OSError:
            metrics = ""
        m = re.search(r"^quire_connection_limit_reached_total (\d+)", metrics, re.M)
        c.figure("(c) quire_connection_limit_reached_total", m.group(1) if m else "absent")
        c.check(m is not None and int(m.group(1)) > 0, "(c) the limit is counted in /metrics")
        logged = [line for line in q.log_text().splitlines() if "connection limit reached" in line]
        c.figure("(c) log lines about the limit", len(logged))
        c.check(1 <= len(logged) <= 10, "(c) the limit is logged (rate-limited)")
    finally:
        q.stop()


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def out_of_fds(c, binary_path):
    """(d) A cap above what the fd limit allows: accepting fails with EMFILE,
    which must be logged and counted without spinning, and service resumes."""
    wrapper_dir = tempfile.mkdtemp(prefix="quire-fdlimit-")
    wrapper = os.path.join(wrapper_dir, "quire")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nulimit -Sn {FD_LIMIT} && ulimit -Hn {FD_LIMIT} || exit 1\n"
                f"exec {os.path.abspath(binary_path)} \"$@\"\n")
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IEXEC)
    q = Quire(wrapper, env={"QUIRE_MAX_CONNECTIONS": "5000"}).start()
    try:
        t0 = time.monotonic()
        attacker = start_attack(q.port, CAP_SLOW, 25, reconnect=False)
        time.sleep(2)
        fds = open_fds(q.pid)
        cpu0 = cpu_seconds(q.pid)
        time.sleep(5)
        cpu = cpu_seconds(q.pid) - cpu0
        c.figure("(d) quire open fds / limit", f"{fds} / {FD_LIMIT}")
        c.figure("(d) quire CPU while out of fds", f"{cpu:.2f} s in 5 s")
        c.check(cpu < 1.0, "(d) out of file descriptors, the accept loop does not spin")
        resumed_at = None
        while time.monotonic() - t0 < 45:
            took = probe(q.port, timeout=2)
            if took is not None and took < 1.0:
                resumed_at = time.monotonic() - t0
                break
            time.sleep(0.25)
        c.figure("(d) service resumed after", f"{resumed_at:.1f} s" if resumed_at else "never")
        attack_result(attacker, 45)
        c.check(resumed_at is not None and q.proc.poll() is None,
                "(d) service resumes once the slow connections are dropped")
        try:
            _, _, metrics = request(q.port, "GET", "/metrics", timeout=5)
            metrics = metrics.decode()
        except OSError:
            metrics = ""
        m = re.search(r"^quire_accept_errors_total (\d+)", metrics, re.M)
        c.figure("(d) quire_accept_errors_total", m.group(1) if m else "absent")
        c.check(m is not None and int(m.group(1)) > 0, "(d) accept errors are counted")
        logged = [line for line in q.log_text().splitlines()
                  if "cannot accept connections" in line]
        c.figure("(d) log lines about accept errors", len(logged))
        c.check(1 <= len(logged) <= 10, "(d) accept errors are logged (rate-limited)")
    finally:
        q.stop()


def main():
    c = Checks("slowloris")
    path = binary()
    q = Quire(path).start()
    try:
        partial_header(c, q)
        many_slow(c, q)
    finally:
        q.stop()
    capped(c, path)
    out_of_fds(c, path)
    c.done()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "attack":
        port, count, seconds, reconnect = sys.argv[2:6]
        asyncio.run(attack(int(port), int(count), float(seconds), reconnect == "1"))
    else:
        main()
