#!/usr/bin/env bash
# Cross-compiles the release binaries into dist/ with `deno compile --target`, one per platform,
# using exactly the flags of the `compile` task in deno.json (read from it, never copied here:
# tests/cli/permissions_test.ts checks that with --dry-run). Writes dist/SHA256SUMS.
#
# Usage: scripts/release.sh [--dry-run] [VERSION]
#   VERSION defaults to $GITHUB_REF_NAME (the pushed tag), else the version in src/cli/version.ts.
#   --dry-run prints the commands instead of running them.
# deno compile downloads the denort runtime for each target, so this needs that host reachable.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

dry_run=false
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=true
  shift
fi
version=${1:-${GITHUB_REF_NAME:-}}
if [ -z "$version" ]; then
  version=v$(sed -n 's/^export const VERSION = "\(.*\)";$/\1/p' src/cli/version.ts)
fi

targets=(
  x86_64-unknown-linux-gnu
  aarch64-unknown-linux-gnu
  x86_64-apple-darwin
  aarch64-apple-darwin
  x86_64-pc-windows-msvc
)

# The compile task is one JSON string on one line: "command": "deno compile <flags> -o <out> main.ts".
task=$(grep -o '"command": *"deno compile [^"]*"' deno.json | head -n 1 |
  sed -e 's/^"command": *"deno compile //' -e 's/"$//')
if [ -z "$task" ]; then
  echo "release.sh: no \"deno compile\" command in deno.json's compile task" >&2
  exit 1
fi
read -r -a words <<<"$task"
flags=()
entry=""
skip_next=false
for word in "${words[@]}"; do
  if $skip_next; then
    skip_next=false
    continue
  fi
  case "$word" in
  -o | --output) skip_next=true ;;
  -o=* | --output=*) ;;
  -*) flags+=("$word") ;;
  *) entry=$word ;;
  esac
done
if [ -z "$entry" ] || ! printf '%s\n' "${flags[@]}" | grep -q '^--allow-'; then
  echo "release.sh: cannot read flags and entry point from: $task" >&2
  exit 1
fi

run() {
  if $dry_run; then
    printf '%s\n' "$*"
  else
    "$@"
  fi
}

run mkdir -p dist
for target in "${targets[@]}"; do
  name="go-cache-plugin-$version-$target"
  case "$target" in *windows*) name="$name.exe" ;; esac
  run "$root/scripts/deno" compile "${flags[@]}" --target "$target" --output "dist/$name" "$entry"
done
if ! $dry_run; then
  (cd dist && sha256sum go-cache-plugin-"$version"-* >SHA256SUMS)
  ls -l dist
fi
