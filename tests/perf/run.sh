#!/usr/bin/env bash
# quire's load benchmark: builds a release binary, seeds a database, starts
# quire on loopback and drives each mix with wrk, alternating A/B/A/B rounds,
# then prints one table of medians with ratios to the in-run baselines.
#
#   bash tests/perf/run.sh            # full: 100,000 records, 10,000 keys, 5 rounds x 10 s, 5-minute memory soak
#   bash tests/perf/run.sh --records 20000 --keys 2000 --rounds 3 --seconds 5   # quicker
#   bash tests/perf/run.sh --soak 0   # skip the memory soak
#   bash tests/perf/run.sh --short    # CI: proves the harness works (no thresholds)
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

cargo build --release --bin quire
exec python3 tests/perf/harness.py --bin target/release/quire "$@"
