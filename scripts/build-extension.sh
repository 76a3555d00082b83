#!/usr/bin/env bash
# nbcache's JupyterLab / Notebook 7 extension, built from js/ into nbcache/labextension/,
# after its lint (ESLint) and type check (tsc). The build is committed, so that no
# install of nbcache needs Node; this rebuilds it in place from the source.
#   --check   also fail when the build differs from the one committed
# Node and npm come from Debian (scripts/install-system.sh); the npm packages from the
# lock file (npm ci, only when node_modules is missing or older than the lock file).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/js"

fail() {
    echo "build-extension.sh: $*" >&2
    exit 1
}
command -v node >/dev/null 2>&1 || fail "node is missing: run \`bash scripts/install-system.sh\`"
command -v npm >/dev/null 2>&1 || fail "npm is missing: run \`bash scripts/install-system.sh\`"
# `jupyter labextension build` of the venv's JupyterLab, whose versions the build shares
[[ -x "$root/.venv/bin/jupyter" ]] && export PATH="$root/.venv/bin:$PATH"
command -v jupyter >/dev/null 2>&1 || fail "jupyter is missing: install nbcache[test] first"

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent lint
npm run --silent typecheck
npm run --silent build >build.log 2>&1 || { cat build.log >&2; fail "the build failed"; }
rm -f build.log

if [[ "${1:-}" == "--check" ]]; then
    cd "$root"
    changed=$(git status --porcelain -- nbcache/labextension)
    [[ -z "$changed" ]] || fail "the committed build is not the source's; commit nbcache/labextension:
$changed"
fi
