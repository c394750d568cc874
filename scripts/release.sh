#!/usr/bin/env bash
# Cross-compiles the release binaries into dist/ with `deno compile --target`, one per platform,
# using exactly the flags of the `compile` task in deno.json (read from it, never copied here:
# tests/cli/permissions_test.ts checks that with --dry-run). Writes dist/SHA256SUMS, then checks
# every file against it. .github/workflows/release.yml attests the files' build provenance and
# uploads exactly what SHA256SUMS lists, plus SHA256SUMS.
#
# Usage: scripts/release.sh [--dry-run] [VERSION]
#        scripts/release.sh --publish [VERSION]
#   VERSION defaults to $GITHUB_REF_NAME (the pushed tag), else the version in src/cli/version.ts.
#   It must be v<the version in src/cli/version.ts> (what the executable's `version` prints, and
#   what the Action at a moving tag such as v1 downloads); --dry-run skips that check.
#   --dry-run prints the commands instead of running them.
# --publish (release.yml, after the attestation; needs gh and GH_TOKEN): checks dist/ against its
#   SHA256SUMS again, then creates the GitHub release VERSION as a draft with those files and
#   publishes it; when the release exists already, only adds them, and fails (changing nothing)
#   if it has a file of the same name: a published release's files are never replaced.
# Files of an earlier build in dist/ (go-cache-plugin-*, SHA256SUMS) are removed first, so a stale
# binary can never be published under the new version's SHA256SUMS.
# deno compile downloads the denort runtime for each target, so this needs that host reachable.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

dry_run=false publish=false
case "${1:-}" in
--dry-run)
  dry_run=true
  shift
  ;;
--publish)
  publish=true
  shift
  ;;
esac
source_version=v$(sed -n 's/^export const VERSION = "\(.*\)";$/\1/p' src/cli/version.ts)
version=${1:-${GITHUB_REF_NAME:-}}
[ -n "$version" ] || version=$source_version
case "$version" in
v[0-9]*) ;;
*)
  echo "release.sh: Cannot release \"$version\": not a version tag such as v1.2.3" >&2
  exit 1
  ;;
esac
case "$version" in
*[!A-Za-z0-9._+-]*)
  echo "release.sh: Cannot release \"$version\": only letters, digits and . _ + - in a tag" >&2
  exit 1
  ;;
esac
if ! $dry_run && [ "$version" != "$source_version" ]; then
  echo "release.sh: Cannot release \"$version\": src/cli/version.ts says \"${source_version#v}\" (bump it, or tag $source_version)" >&2
  exit 1
fi

# shellcheck source=scripts/action/lib.sh
. "$root/scripts/action/lib.sh" # gcp_sha256: sha256sum, or shasum on macOS

# check_sums: every file dist/SHA256SUMS lists is there and matches it (what a user's
# `sha256sum --check` does); prints the names, one a line.
check_sums() {
  local sum file
  [ -s dist/SHA256SUMS ] || {
    echo "release.sh: Cannot find dist/SHA256SUMS: build first (scripts/release.sh $version)" >&2
    return 1
  }
  while read -r sum file; do
    file=${file#\*}
    case "$file" in
    go-cache-plugin-"$version"-*) ;;
    *)
      echo "release.sh: dist/SHA256SUMS lists \"$file\", not a $version binary" >&2
      return 1
      ;;
    esac
    [ -f "dist/$file" ] && [ "$(gcp_sha256 "dist/$file")" = "$sum" ] || {
      echo "release.sh: dist/$file does not match dist/SHA256SUMS" >&2
      return 1
    }
    printf '%s\n' "$file"
  done <dist/SHA256SUMS
}

# publish: the release VERSION gets dist/'s files, or nothing changes.
publish() {
  local names files=() name existing
  names=$(check_sums) || return 1
  while read -r name; do files+=("dist/$name"); done <<<"$names"
  files+=(dist/SHA256SUMS)
  if existing=$(gh release view "$version" --json assets --jq '.assets[].name' 2>/dev/null); then
    for name in "${files[@]}"; do
      if printf '%s\n' "$existing" | grep -qxF "${name#dist/}"; then
        echo "release.sh: Cannot publish ${name#dist/}: release $version already has a file of that name, and a published release's files are never replaced (tag a new version, or delete the release first)" >&2
        return 1
      fi
    done
    gh release upload "$version" "${files[@]}"
  else
    gh release create "$version" --title "$version" --generate-notes --verify-tag --draft \
      "${files[@]}"
    gh release edit "$version" --draft=false
  fi
}

if $publish; then
  publish
  exit
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
run rm -f dist/go-cache-plugin-* dist/SHA256SUMS
for target in "${targets[@]}"; do
  name="go-cache-plugin-$version-$target"
  case "$target" in *windows*) name="$name.exe" ;; esac
  run "$root/scripts/deno" compile "${flags[@]}" --target "$target" --output "dist/$name" "$entry"
done
if ! $dry_run; then
  for target in "${targets[@]}"; do
    name=$(gcp_asset "$version" "$target")
    printf '%s  %s\n' "$(gcp_sha256 "dist/$name")" "$name"
  done >dist/SHA256SUMS
  check_sums >/dev/null
  ls -l dist
  cat dist/SHA256SUMS
fi
