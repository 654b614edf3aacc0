#!/usr/bin/env bash
# quire's hardening suite: each scenario in tests/hardening/*.py starts its
# own quire from a release binary (and its own redis-server or PostgreSQL
# database when it needs one), attacks it or breaks a dependency, prints the
# figures it measured and fails on a broken bound.
#
#   bash tests/hardening/run.sh                 # every scenario
#   bash tests/hardening/run.sh memory shutdown # some of them
#   QUIRE_BIN=path/to/quire bash tests/hardening/run.sh   # another binary (a before/after run)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${QUIRE_BIN:-}" ]; then
  cargo build --release --bin quire
  QUIRE_BIN=target/release/quire
fi
QUIRE_BIN="$(realpath "$QUIRE_BIN")"
export QUIRE_BIN
cd tests/hardening
if [ "$#" -eq 0 ]; then
  set -- $(ls *.py | grep -v '^common\.py$' | sed 's/\.py$//')
fi
failed=()
for scenario in "$@"; do
  echo "== hardening: $scenario"
  if ! timeout 600 python3 "$scenario.py"; then
    failed+=("$scenario")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "hardening scenarios failed: ${failed[*]}"
  exit 1
fi
echo "hardening: every scenario passed"
