#!/usr/bin/env bash
# GraphQL-over-HTTP conformance audit (graphql-http's serverAudits) against a
# freshly started quire on a loopback port with an empty SQLite database.
#
#   bash tests/graphql-http-audit/run.sh            # target/release/quire, else target/debug/quire
#   QUIRE_BIN=target/debug/quire bash tests/graphql-http-audit/run.sh
#
# Exit status: audit.mjs's (0 = every MUST audit passed, 1 = some failed);
# 0 with "skipped: node/npm not found" when node or npm is missing;
# 2 when the server cannot be started.
set -euo pipefail

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "skipped: node/npm not found"
  exit 0
fi

SRC="${BASH_SOURCE[0]}"
[[ "$SRC" == */* ]] || SRC="./$SRC"
HERE="$(cd "${SRC%/*}" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STARTUP_TIMEOUT=20 # seconds, for the bootstrap key and /healthz

# --- the quire binary -------------------------------------------------------
# shellcheck source=../common/quire-bin.sh
source "$ROOT/tests/common/quire-bin.sh"

# --- dependencies -------------------------------------------------------------
echo "installing graphql-http (npm install)…"
if ! (cd "$HERE" && timeout 300 npm install --no-audit --no-fund --loglevel=error >/dev/null 2>"$HERE/.npm-install.log"); then
  cat "$HERE/.npm-install.log" >&2
  echo "error: npm install failed in $HERE" >&2
  exit 2
fi
rm -f "$HERE/.npm-install.log"

# --- start quire ----------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/quire-audit.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port: bind port 0, read the port the kernel chose, release it.
PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});')"
URL="http://127.0.0.1:$PORT"

(
  cd "$TMP"
  exec env QUIRE_LISTEN="127.0.0.1:$PORT" \
    QUIRE_DATABASE_URL="sqlite://$TMP/audit.db?mode=rwc" \
    "$BIN" serve >"$TMP/stdout.log" 2>"$TMP/stderr.log"
) &
SERVER_PID=$!

server_failed() {
  echo "error: $1" >&2
  echo "--- quire stdout (key lines masked) ---" >&2
  sed -E 's/(sk|pk)_(test|live)_[A-Za-z0-9]+/\1_\2_<redacted>/g' "$TMP/stdout.log" >&2 || true
  echo "--- quire stderr (last 30 lines) ---" >&2
  tail -n 30 "$TMP/stderr.log" >&2 || true
  exit 2
}

health_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 2 -o /dev/null "$URL/healthz" 2>/dev/null
  else
    node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$URL/healthz"
  fi
}

KEY=""
deadline=$((SECONDS + STARTUP_TIMEOUT))
while :; do
  kill -0 "$SERVER_PID" 2>/dev/null || server_failed "quire exited during startup"
  if [[ -z "$KEY" ]]; then
    KEY="$(grep -E '^sk_test_[A-Za-z0-9]+$' "$TMP/stdout.log" | tail -n 1 || true)"
  fi
  if [[ -n "$KEY" ]] && health_ok; then break; fi
  ((SECONDS < deadline)) || server_failed "quire not ready within ${STARTUP_TIMEOUT}s (bootstrap key seen: $([[ -n $KEY ]] && echo yes || echo no))"
  sleep 0.2
done
echo "quire $("$BIN" --version 2>/dev/null | awk '{print $NF}') up at $URL ($BIN)"

# --- audit ------------------------------------------------------------------------
set +e
(cd "$HERE" && QUIRE_URL="$URL" QUIRE_API_KEY="$KEY" timeout 180 node audit.mjs)
status=$?
set -e
exit "$status"
