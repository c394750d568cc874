#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (the pinned Deno, MinIO and
# toxiproxy built from the Go module proxy, cached under ~/.cache/go-cache-plugin-tools), then runs
# `deno test` on the given paths (default: everything under tests/).
#   scripts/test.sh                 # all tests
#   scripts/test.sh tests/e2e       # only the end-to-end ones
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/deno --version >/dev/null            # installs Deno on a fresh machine
if [ -x scripts/install_test_servers.sh ]; then
  scripts/install_test_servers.sh
fi
export GCP_TOOLS_DIR="${GCP_TOOLS_DIR:-$HOME/.cache/go-cache-plugin-tools}"
export PATH="$GCP_TOOLS_DIR/bin:$PATH"
# The plugin must never recurse into itself through an inherited GOCACHEPROG.
unset GOCACHEPROG
[ $# -gt 0 ] || set -- tests/ src/
exec scripts/deno test --frozen --doc --allow-read --allow-write --allow-env \
  --allow-net=127.0.0.1,localhost --allow-run "$@"
