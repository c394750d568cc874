#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (the pinned Deno, MinIO and
# toxiproxy built from the Go module proxy, cached under ~/.cache/go-cache-plugin-tools), then runs
# `deno test` on the given paths (default: everything under tests/).
#   scripts/test.sh                 # all tests
#   scripts/test.sh tests/e2e       # only the end-to-end ones
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# The plugin must never recurse into itself through an inherited GOCACHEPROG (go install below
# and every go command the tests run).
unset GOCACHEPROG
scripts/deno --version >/dev/null            # installs Deno on a fresh machine
# GCP_SKIP_TEST_SERVERS=1: unit tests only (`deno task test:unit`), which need no servers.
if [ "${GCP_SKIP_TEST_SERVERS:-}" != 1 ] && [ -x scripts/install_test_servers.sh ]; then
  scripts/install_test_servers.sh
fi
export GCP_TOOLS_DIR="${GCP_TOOLS_DIR:-$HOME/.cache/go-cache-plugin-tools}"
export PATH="$GCP_TOOLS_DIR/bin:$PATH"
[ $# -gt 0 ] || set -- tests/ src/
# --allow-net is unscoped only because Deno 2.9 asks net permission for Unix sockets by path
# (`unix:/tmp/...`), which a host list cannot name; every test talks to loopback only.
# --allow-sys: the AWS SDK reads OS facts (osRelease, uid) in the in-process S3 tests.
exec scripts/deno test --frozen --doc --allow-read --allow-write --allow-env \
  --allow-net --allow-sys --allow-run "$@"
