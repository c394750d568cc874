# shellcheck shell=bash
# Shared by the GitHub Action's scripts (setup.sh, stop.sh) and the test stand-in
# (tests/action/standin.sh): release asset names, checksums, bounded waits, annotations.
# Source it from bash; it defines functions only. POSIX tools, curl and sha256sum/shasum.

# gcp_target RUNNER_OS RUNNER_ARCH: prints the target triple scripts/release.sh builds for this
# runner, or fails (status 1) when there is no release executable for it.
gcp_target() {
  case "$1/$2" in
  Linux/X64) echo x86_64-unknown-linux-gnu ;;
  Linux/ARM64) echo aarch64-unknown-linux-gnu ;;
  macOS/X64) echo x86_64-apple-darwin ;;
  macOS/ARM64) echo aarch64-apple-darwin ;;
  Windows/X64) echo x86_64-pc-windows-msvc ;;
  *) return 1 ;;
  esac
}

# gcp_asset VERSION TARGET: the release asset's file name (as scripts/release.sh names it).
gcp_asset() {
  case "$2" in
  *windows*) echo "go-cache-plugin-$1-$2.exe" ;;
  *) echo "go-cache-plugin-$1-$2" ;;
  esac
}

# gcp_sha256 FILE: prints the file's SHA-256 in lowercase hex.
gcp_sha256() {
  local sum
  if command -v sha256sum >/dev/null 2>&1; then
    sum=$(sha256sum "$1") || return 1
  elif command -v shasum >/dev/null 2>&1; then
    sum=$(shasum -a 256 "$1") || return 1
  else
    echo "neither sha256sum nor shasum is installed" >&2
    return 1
  fi
  printf '%s\n' "${sum%% *}" | tr 'A-F' 'a-f'
}

# gcp_expected_sum SUMS_FILE NAME: prints the checksum SUMS_FILE lists for NAME (sha256sum's
# format: "<hex>  <name>" or "<hex> *<name>"), or fails when NAME is not listed.
gcp_expected_sum() {
  awk -v name="$2" '
    { file = $2; sub(/^\*/, "", file) }
    file == name && $1 ~ /^[0-9a-fA-F]+$/ && length($1) == 64 { print tolower($1); found = 1; exit }
    END { exit found ? 0 : 1 }
  ' "$1"
}

# gcp_bounded SECONDS COMMAND...: runs COMMAND, killing it after SECONDS; status 124 on timeout.
# (macOS has no timeout(1).)
gcp_bounded() {
  local limit=$1 pid ticks=0
  shift
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$ticks" -ge $((limit * 10)) ]; then
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      return 124
    fi
    sleep 0.1
    ticks=$((ticks + 1))
  done
  wait "$pid"
}

# gcp_unix_path PATH / gcp_native_path PATH: on Windows (Git Bash), convert between the shell's
# /d/a/... form and the D:\a\... form native programs (go, the plugin) need; elsewhere unchanged.
gcp_unix_path() {
  if [ "${RUNNER_OS:-}" = Windows ] && command -v cygpath >/dev/null 2>&1; then
    cygpath -u "$1"
  else
    printf '%s\n' "$1"
  fi
}
gcp_native_path() {
  if [ "${RUNNER_OS:-}" = Windows ] && command -v cygpath >/dev/null 2>&1; then
    cygpath -w "$1"
  else
    printf '%s\n' "$1"
  fi
}

# gcp_annotation LEVEL MESSAGE: one workflow command (::warning::, ::notice::) with the message
# escaped as GitHub requires (%, CR, LF), so it stays one line.
gcp_annotation() {
  local message=$2
  message=${message//'%'/'%25'}
  message=${message//$'\r'/'%0D'}
  message=${message//$'\n'/'%0A'}
  printf '::%s title=go-cache-plugin::%s\n' "$1" "$message"
}
