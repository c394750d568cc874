#!/usr/bin/env bash
# Writes a local stand-in for a go-cache-plugin release download, for tests of the GitHub Action
# (tests/action/action_test.ts, the `action` job of .github/workflows/ci.yml): in DIR, a small
# wrapper script that execs this checkout's scripts/go-cache-plugin (main.ts with the release
# permissions), named as scripts/release.sh names the asset for RUNNER_OS/RUNNER_ARCH, and a
# SHA256SUMS listing it. Not a compiled binary: `deno compile` is not run here.
#   tests/action/standin.sh DIR VERSION          (uses $RUNNER_OS and $RUNNER_ARCH)
# Point the action at it with GCP_ACTION_DOWNLOAD_BASE=file://DIR and the version input VERSION.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/action/lib.sh
. "$root/scripts/action/lib.sh"
dir=$1
version=$2
target=$(gcp_target "${RUNNER_OS:?}" "${RUNNER_ARCH:?}") || {
  echo "standin.sh: no release target for $RUNNER_OS/$RUNNER_ARCH" >&2
  exit 1
}
asset=$(gcp_asset "$version" "$target")
mkdir -p "$dir"
printf '#!/bin/sh\n# Stand-in for the release asset %s (tests only).\nexec %q "$@"\n' \
  "$asset" "$root/scripts/go-cache-plugin" >"$dir/$asset"
chmod +x "$dir/$asset"
printf '%s  %s\n' "$(gcp_sha256 "$dir/$asset")" "$asset" >"$dir/SHA256SUMS"
printf '%s\n' "$dir/$asset"
