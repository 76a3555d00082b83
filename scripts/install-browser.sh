#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/browser), driven by Playwright through
# executable_path=/usr/bin/chromium; never `playwright install` (no browser downloads).
# Idempotent: does nothing when /usr/bin/chromium is there already.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi

fail() {
    echo "install-browser.sh: $*" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "$CHROMIUM is missing and apt-get is not available"

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || fail "$CHROMIUM is missing; installing it needs root (or sudo)"
    SUDO=(sudo -n)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "install-browser.sh: installing Debian's chromium (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get update failed"
fi
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get install chromium failed"
fi
[[ -x "$CHROMIUM" ]] || fail "apt-get installed chromium but $CHROMIUM is missing"
echo "install-browser.sh: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed" >&2
