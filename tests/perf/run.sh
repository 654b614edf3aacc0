#!/usr/bin/env bash
# quire's load benchmark: builds a release quire and the naive reference
# server (benches/naive_reference.rs), seeds a database, starts the servers on
# loopback and drives each mix with wrk, alternating A/B/A/B rounds, then
# prints one table of medians with ratios to references measured in the same
# run (tests/perf/harness.py has the details):
#   - floors: the HTTP floor (GET /healthz) and the GraphQL floor
#     ({ __typename } with a key), on quire;
#   - cache off: a second quire on the same SQLite file with
#     QUIRE_READ_CACHE_MB=0, for the uncached read path (the read cache answers
#     repeated published reads);
#   - naive: async-graphql + axum + sea-orm, no auth, no limits, no cache, on
#     the same database, for the same request bodies; "vs naive (CPU)" is
#     quire's CPU per request over the naive counterpart's;
#   - PostgreSQL (when QUIRE_TEST_DATABASE_URL or --postgres URL is given;
#     --no-postgres skips): a fresh database quire_perf_<pid> on that server
#     (dropped at the end), quire on it without Redis, seeded the same way,
#     with and without the read cache, and the naive reference on it; the
#     PostgreSQL backends' CPU is its own column.
# The table says which server served each mix.
#
#   bash tests/perf/run.sh            # full: 100,000 records, 10,000 keys, 5 rounds x 10 s, 5-minute memory soak
#   bash tests/perf/run.sh --records 20000 --keys 2000 --rounds 3 --seconds 5   # quicker
#   bash tests/perf/run.sh --soak 0   # skip the memory soak
#   bash tests/perf/run.sh --only 'records(limit: 10), cache off,naive: records(limit: 10)'   # some mixes (+ the floors)
#   bash tests/perf/run.sh --no-postgres   # SQLite only
#   bash tests/perf/run.sh --short    # CI: proves every part works (no thresholds)
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; }) || true
  fi
fi
if ! command -v wrk >/dev/null 2>&1; then
  echo "skipped: wrk is not installed and could not be installed"
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "skipped: python3 not found"
  exit 0
fi

# One cargo invocation for both: a bench target brings the dev-dependencies'
# features (serde "rc", serde_json "raw_value", ...) into the resolve, so
# building them apart would compile quire and most dependencies twice. The
# quire measured here is the same code with those extra, unused features.
# The executables are those cargo reports for the two targets.
bins=$(cargo build --release --bin quire --bench naive_reference --message-format=json-render-diagnostics |
  python3 -c 'import json, sys
found = {}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        found[m["target"]["name"]] = m["executable"]
print(found.get("quire", ""), found.get("naive_reference", ""))')
read -r quire naive <<<"$bins"
if [ -z "$quire" ] || [ -z "$naive" ]; then
  echo "error: cargo did not report the quire and naive_reference executables" >&2
  exit 1
fi
exec python3 tests/perf/harness.py --bin "$quire" --naive-bin "$naive" "$@"
