# Sourced by the suites that drive a built quire (tests/graphql-http-audit,
# tests/clients): sets BIN to QUIRE_BIN (absolute, or relative to the working
# directory or to ROOT, the repository), else target/release/quire, else
# target/debug/quire; exits 2 when there is none. Needs ROOT set.

resolve_bin() {
  local p="$1"
  case "$p" in
    /*) [[ -x "$p" ]] && { echo "$p"; return 0; } ;;
    *)
      [[ -x "$PWD/$p" ]] && { echo "$PWD/$p"; return 0; }
      [[ -x "$ROOT/$p" ]] && { echo "$ROOT/$p"; return 0; }
      ;;
  esac
  return 1
}
if [[ -n "${QUIRE_BIN:-}" ]]; then
  BIN="$(resolve_bin "$QUIRE_BIN")" || { echo "error: QUIRE_BIN=$QUIRE_BIN is not an executable" >&2; exit 2; }
else
  BIN="$(resolve_bin target/release/quire || resolve_bin target/debug/quire)" || {
    echo "error: no quire binary (target/release/quire or target/debug/quire); build one or set QUIRE_BIN" >&2
    exit 2
  }
fi
