#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing:
#   chromium      tests/browser (JupyterLab driven by Playwright through
#                 executable_path=/usr/bin/chromium; never `playwright install`)
#   redis-server  tests/stores (the Redis lease; the tests start and stop it)
#   nodejs, npm   scripts/build-extension.sh (the JupyterLab extension, from js/)
set -euo pipefail

declare -A WANT=([chromium]=/usr/bin/chromium [redis-server]=/usr/bin/redis-server
    [nodejs]=/usr/bin/node [npm]=/usr/bin/npm)

missing=()
for package in "${!WANT[@]}"; do
    [[ -x "${WANT[$package]}" ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

fail() {
    echo "install-system.sh: $*" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "${missing[*]} missing and apt-get is not available"

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || fail "${missing[*]} missing; installing needs root (or sudo)"
    SUDO=(sudo -n)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "install-system.sh: installing Debian's ${missing[*]} (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get update failed"
fi
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get install ${missing[*]} failed"
fi
for package in "${missing[@]}"; do
    [[ -x "${WANT[$package]}" ]] || fail "apt-get installed $package but ${WANT[$package]} is missing"
done
# Debian starts a system redis on port 6379 after installing it; the tests start their own.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    "${SUDO[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
echo "install-system.sh: installed ${missing[*]}" >&2
