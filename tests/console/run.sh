#!/usr/bin/env bash
# Browser suite for the web console (issue 19): console.mjs starts a quire
# binary on a loopback port with its own SQLite file and drives /console and
# the GraphiQL page in headless Debian chromium through playwright-core.
#
#   bash tests/console/run.sh            # target/release/quire, else target/debug/quire
#   QUIRE_BIN=/path/to/quire bash tests/console/run.sh
#   CONSOLE_SCREENSHOT=tests/console/console.png bash tests/console/run.sh   # also the README picture
#
# Installs from the registries only, cached between runs: playwright-core into
# tests/console/node_modules (gitignored) and `chromium` with apt-get when run
# as root and it is missing. Nothing downloads a browser build: playwright-core
# drives /usr/bin/chromium. Screenshots of failed checks land in
# tests/console/artifacts/ (gitignored; CI keeps them).
#
# Exit status: 0 = every check passed; 1 = some failed; 0 with "skipped: …"
# when node or npm is missing, or chromium cannot be had; 2 when dependencies
# cannot be installed or there is no binary.
set -euo pipefail

for tool in node npm; do
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

# shellcheck source=../common/quire-bin.sh
source "$ROOT/tests/common/quire-bin.sh"

install_failed() {
  cat "$HERE/.install.log" >&2 || true
  echo "error: $1" >&2
  exit 2
}
started=$SECONDS
echo "installing playwright-core (npm install)…"
(cd "$HERE" && timeout 300 npm install --no-audit --no-fund --loglevel=error >/dev/null 2>"$HERE/.install.log") ||
  install_failed "npm install failed in $HERE"

if [[ ! -x "$CHROMIUM" ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get)…"
    { timeout 600 apt-get install -y --no-install-recommends chromium ||
      { timeout 300 apt-get update && timeout 600 apt-get install -y --no-install-recommends chromium; }; } \
      >"$HERE/.install.log" 2>&1 || install_failed "apt-get install chromium failed"
  else
    rm -f "$HERE/.install.log"
    echo "skipped: $CHROMIUM not found and not root to apt-get install chromium"
    exit 0
  fi
fi
rm -f "$HERE/.install.log"
echo "dependencies ready in $((SECONDS - started)) s"
echo "quire $("$BIN" --version 2>/dev/null | awk '{print $NF}') ($BIN)"

SHOT="${CONSOLE_SCREENSHOT:-}"
[[ -z "$SHOT" || "$SHOT" == /* ]] || SHOT="$PWD/$SHOT"
cd "$HERE"
exec env QUIRE_BIN="$BIN" CHROMIUM_PATH="$CHROMIUM" CONSOLE_SCREENSHOT="$SHOT" timeout 600 node console.mjs
