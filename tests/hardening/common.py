"""Shared pieces of the hardening suite: a quire process started from a
binary, API keys, GraphQL over plain sockets, a private redis-server, fresh
PostgreSQL databases, and a checklist that prints figures and fails the run.

Every scenario talks to loopback only, bounds its loops in count and time,
and stops what it started (also when it fails).
"""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

KEY_RE = re.compile(rb"\b(sk_test_[0-9A-Za-z]{38})\b")

# Working directories this process made; removed at exit unless a check
# failed or an exception escaped (then kept, and named, for the logs).
_MADE = []
_KEEP = [False]


def _keep_on_exception(kind, value, tb):
    _KEEP[0] = True
    sys.__excepthook__(kind, value, tb)


sys.excepthook = _keep_on_exception


@atexit.register
def _remove_workdirs():
    if _KEEP[0]:
        for d in _MADE:
            print(f"kept for inspection: {d}", flush=True)
        return
    for d in _MADE:
        shutil.rmtree(d, ignore_errors=True)
PG_URL = os.environ.get("QUIRE_TEST_DATABASE_URL")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def rss_kib(pid):
    """Resident memory of a process, in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Checks:
    """Collects pass/fail lines and figures; `done()` exits non-zero on a failure."""

    def __init__(self, name):
        self.name = name
        self.failed = []

    def figure(self, what, value):
        print(f"  {self.name}: {what} = {value}", flush=True)

    def check(self, ok, what):
        print(f"  {'ok  ' if ok else 'FAIL'} {self.name}: {what}", flush=True)
        if not ok:
            self.failed.append(what)
            _KEEP[0] = True
        return ok

    def done(self):
        if self.failed:
            print(f"{self.name}: {len(self.failed)} check(s) failed", flush=True)
            sys.exit(1)
        print(f"{self.name}: all checks passed", flush=True)


class Quire:
    """One `quire serve` process on a free port, with its own SQLite file
    (or the PostgreSQL/Redis URLs given), its log in a temporary directory."""

    def __init__(self, binary, database_url=None, redis_url=None, env=None, workdir=None):
        self.binary = os.path.abspath(binary)
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="quire-hardening-")
            _MADE.append(workdir)
        self.dir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url or f"sqlite://{self.dir}/quire.db?mode=rwc"
        self.redis_url = redis_url
        self.extra_env = env or {}
        self.proc = None
        self.root = None
        self.log_path = os.path.join(self.dir, "quire.log")

    def start(self, timeout=30.0):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("QUIRE_"):
                del env[k]
        env.update({
            "QUIRE_LISTEN": f"127.0.0.1:{self.port}",
            "QUIRE_DATABASE_URL": self.database_url,
            "RUST_LOG": env.get("RUST_LOG", "info"),
        })
        if self.redis_url:
            env["QUIRE_REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "serve"], env=env, cwd=self.dir,
                                     stdout=subprocess.PIPE, stderr=self.log)
        # The bootstrap key is printed on stdout at the first start only.
        end = time.time() + timeout
        out = b""
        os.set_blocking(self.proc.stdout.fileno(), False)
        while time.time() < end:
            chunk = self.proc.stdout.read() or b""
            out += chunk
            m = KEY_RE.search(out)
            if m and self.root is None:
                self.root = m.group(1).decode()
            if self.healthy():
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"quire exited with {self.proc.returncode}; log: {self.log_path}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"quire did not start within {timeout} s; log: {self.log_path}")
        return self

    def healthy(self, timeout=1.0):
        try:
            status, _, _ = request(self.port, "GET", "/healthz", timeout=timeout)
            return status == 200
        except OSError:
            return False

    @property
    def pid(self):
        return self.proc.pid

    def rss_mib(self):
        return rss_kib(self.pid) / 1024

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """The exit status, or None if still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def gql(self, key, query, variables=None, timeout=30.0):
        return gql(self.port, key, query, variables, timeout)

    def new_key(self, root, name=None, type_="PUBLIC", mode="LIVE", scopes=("records:read",),
                limit=None):
        """A key made through the API with `root` (TEST keys make TEST keys:
        use `quire admin` for a live key, see `admin_key`)."""
        fields = [f'name: "{name or "k-" + uuid.uuid4().hex[:8]}"', f"type: {type_}",
                  f"mode: {mode}", "scopes: " + json.dumps(list(scopes))]
        if limit:
            fields.append(f"rateLimitPerHour: {limit}")
        status, _, body = self.gql(root, "mutation { createApiKey(input: {%s}) { key } }"
                                   % ", ".join(fields))
        if status != 200 or body.get("errors"):
            raise RuntimeError(f"createApiKey: {status} {body}")
        return body["data"]["createApiKey"]["key"]

    def admin_key(self, type_="public", mode="live", scopes="records:read", limit=None):
        """A key made with `quire admin keys create` (any mode)."""
        args = [self.binary, "admin", "keys", "create", "--project", "default",
                "--name", "admin-" + uuid.uuid4().hex[:8], "--type", type_, "--mode", mode,
                "--scopes", scopes, "--json"]
        if limit:
            args += ["--rate-limit", str(limit)]
        env = dict(os.environ, QUIRE_DATABASE_URL=self.database_url)
        out = subprocess.run(args, env=env, cwd=self.dir, capture_output=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"admin keys create: {out.stderr.decode()}")
        return json.loads(out.stdout)["key"]


def request(port, method, path, body=None, headers=None, timeout=30.0):
    """One HTTP request on a fresh connection: (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def gql(port, key, query, variables=None, timeout=30.0):
    """A GraphQL POST: (status, headers, parsed JSON body or None)."""
    payload = json.dumps({"query": query, "variables": variables or {}}).encode()
    status, headers, data = request(port, "POST", "/graphql", payload, {
        "content-type": "application/json", "x-api-key": key}, timeout)
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    return status, headers, parsed


def codes(body):
    """The extensions.code of every error in a GraphQL answer (or batch)."""
    if isinstance(body, list):
        return [c for b in body for c in codes(b)]
    if not isinstance(body, dict):
        return []
    return [(e.get("extensions") or {}).get("code") for e in body.get("errors") or []]


class OwnRedis:
    """A redis-server of our own on a free port, which a test may pause
    (SIGSTOP), resume or kill without touching the shared one."""

    def __init__(self):
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server not found")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--bind", "127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError("redis-server did not start")

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)


class FreshPg:
    """A PostgreSQL database of its own on the server of QUIRE_TEST_DATABASE_URL,
    dropped by `drop()`."""

    def __init__(self):
        if not PG_URL:
            raise RuntimeError("QUIRE_TEST_DATABASE_URL is not set")
        self.name = "quire_h_" + uuid.uuid4().hex[:12]
        self.admin = PG_URL
        psql(self.admin, f"CREATE DATABASE {self.name}")
        base = PG_URL.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def drop(self):
        psql(self.admin, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   capture_output=True, timeout=60)


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def well_formed_key(prefix="sk_test_"):
    """A key with a random body and a valid checksum that no database holds:
    it passes the shape check, so resolving it needs a lookup."""
    import random
    import zlib
    body = "".join(random.choice(B62) for _ in range(32))
    crc = zlib.crc32((prefix + body).encode()) & 0xFFFFFFFF
    digits = ""
    while crc:
        crc, r = divmod(crc, 62)
        digits = B62[r] + digits
    return prefix + body + digits.rjust(6, "0")
