#!/usr/bin/env bash
# Client suites (issue 12): Python gql (sync client, batch transport), Apollo
# Client 4 with BatchHttpLink (node) and a page on another origin in headless
# Debian chromium (playwright-core), against a freshly started quire on a
# loopback port with its own SQLite file (suite.py starts and stops it).
#
#   bash tests/clients/run.sh            # target/release/quire, else target/debug/quire
#   QUIRE_BIN=/path/to/quire bash tests/clients/run.sh
#
# Installs from the registries only, cached between runs: npm packages into
# tests/clients/node_modules, gql into the venv tests/clients/.venv (or
# tests/clients/.pydeps without a venv module; all gitignored), and `chromium` with apt-get when run as root and it is missing.
# Nothing downloads a browser build: playwright-core drives /usr/bin/chromium.
#
# Exit status: 0 = every check passed; 1 = some failed; 0 with "skipped: …"
# when node, npm or python3 is missing (the browser test alone is skipped
# when chromium cannot be had); 2 when dependencies cannot be installed or
# there is no binary.
set -euo pipefail

for tool in node npm python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "skipped: $tool not found"
    exit 0
  fi
done

SRC="${BASH_SOURCE[0]}"
[[ "$SRC" == */* ]] || SRC="./$SRC"
HERE="$(cd "${SRC%/*}" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHROMIUM=/usr/bin/chromium

# --- the quire binary -------------------------------------------------------
# shellcheck source=../common/quire-bin.sh
source "$ROOT/tests/common/quire-bin.sh"

# --- dependencies -------------------------------------------------------------
install_failed() {
  cat "$HERE/.install.log" >&2 || true
  echo "error: $1" >&2
  exit 2
}
started=$SECONDS

echo "installing @apollo/client, graphql, playwright-core (npm install)…"
(cd "$HERE" && timeout 300 npm install --no-audit --no-fund --loglevel=error >/dev/null 2>"$HERE/.install.log") ||
  install_failed "npm install failed in $HERE"

# gql into a venv; where python3 has no venv module (Debian without
# python3-venv), into tests/clients/.pydeps with pip --target instead.
VENV="$HERE/.venv"
PY="$VENV/bin/python"
PYDEPS="$HERE/.pydeps"
PYPATH=""
if ! "$PY" -c 'import gql, requests, requests_toolbelt' >/dev/null 2>&1; then
  if PYTHONPATH="$PYDEPS" python3 -c 'import gql, requests, requests_toolbelt' >/dev/null 2>&1; then
    PY=python3 PYPATH="$PYDEPS"
  elif python3 -m venv --clear "$VENV" >"$HERE/.install.log" 2>&1; then
    echo "installing gql[requests] into $VENV (pip)…"
    timeout 300 "$PY" -m pip install --quiet --disable-pip-version-check 'gql[requests]>=4,<5' \
      >"$HERE/.install.log" 2>&1 || install_failed "could not install gql into $VENV"
  else
    rm -rf "$VENV"
    echo "installing gql[requests] into $PYDEPS (pip --target; no venv module)…"
    timeout 300 python3 -m pip install --quiet --disable-pip-version-check --target "$PYDEPS" \
      'gql[requests]>=4,<5' >"$HERE/.install.log" 2>&1 || install_failed "could not install gql into $PYDEPS"
    PY=python3 PYPATH="$PYDEPS"
  fi
fi

SKIP_BROWSER=""
if [[ ! -x "$CHROMIUM" ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get)…"
    { timeout 600 apt-get install -y --no-install-recommends chromium ||
      { timeout 300 apt-get update && timeout 600 apt-get install -y --no-install-recommends chromium; }; } \
      >"$HERE/.install.log" 2>&1 || install_failed "apt-get install chromium failed"
  else
    SKIP_BROWSER="$CHROMIUM not found and not root to apt-get install chromium"
  fi
fi
rm -f "$HERE/.install.log"
echo "dependencies ready in $((SECONDS - started)) s"
echo "quire $("$BIN" --version 2>/dev/null | awk '{print $NF}') ($BIN)"

# --- the suites (suite.py starts quire, runs gql, apollo.mjs, browser.mjs) ----------
cd "$HERE"
exec env QUIRE_BIN="$BIN" CLIENTS_SKIP_BROWSER="$SKIP_BROWSER" CHROMIUM_PATH="$CHROMIUM" \
  PYTHONPATH="$PYPATH" timeout 600 "$PY" suite.py
