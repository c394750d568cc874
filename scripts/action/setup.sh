#!/usr/bin/env bash
# The GitHub Action's main step (action.yml): downloads the go-cache-plugin release executable for
# this runner, checks it against the release's SHA256SUMS, starts `serve` in the background and
# exports GOCACHEPROG (and GOPROXY/GOSUMDB for the module proxy) to the job's later steps.
#
# Never fails the job: on any problem it prints one ::warning:: annotation saying why, leaves
# GOCACHEPROG unset (go builds run without the plugin) and exits 0.
#
# Inputs (action.yml maps them): INPUT_BUCKET, INPUT_REGION, INPUT_ENDPOINT, INPUT_PATH_STYLE,
# INPUT_PREFIX, INPUT_READ_PREFIXES, INPUT_READ_ONLY, INPUT_WARM_KEY, INPUT_MODULE_PROXY,
# INPUT_VERSION, INPUT_CACHE_DIR; GCP_ACTION_REPOSITORY and GCP_ACTION_REF (the action's own
# repository and ref). GitHub's files and facts: GITHUB_ENV, GITHUB_OUTPUT, GITHUB_PATH, RUNNER_OS,
# RUNNER_ARCH, RUNNER_TEMP, RUNNER_TOOL_CACHE, GITHUB_EVENT_NAME, GITHUB_SERVER_URL,
# GITHUB_REPOSITORY, GITHUB_WORKFLOW, GITHUB_JOB.
# Any other plugin setting: its GOCACHE_* variable in the step's env (the server inherits it).
#
# Test hooks (tests/action/action_test.ts):
#   GCP_ACTION_DOWNLOAD_BASE  where the release assets of the chosen version are, instead of
#                             <server>/<repo>/releases/download/<version> (any URL curl reads,
#                             such as file:///path/to/dir); the version must then be given
#   GCP_ACTION_START_TIMEOUT  seconds to wait for the server to answer (default 30)
set -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/action/lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
action_root=$(cd "$here/../.." && pwd)

reason=""       # why the cache is off, for the one warning
state_dir=""
failed_file=""

say() { printf 'go-cache-plugin: %s\n' "$*"; }
fail() {
  reason=$1
  return 1
}
to_env() { [ -n "${GITHUB_ENV:-}" ] && printf '%s=%s\n' "$1" "$2" >>"$GITHUB_ENV"; }
to_output() { [ -n "${GITHUB_OUTPUT:-}" ] && printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"; }
truthy() {
  case "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" in
  true | 1 | yes | on) return 0 ;;
  *) return 1 ;;
  esac
}
# A word for GOCACHEPROG: go splits it on spaces, honouring '…' and "…" quotes.
quote_word() {
  case "$1" in
  *[[:space:]\"\']*)
    case "$1" in
    *\"*) printf "'%s'" "$1" ;;
    *) printf '"%s"' "$1" ;;
    esac
    ;;
  *) printf '%s' "$1" ;;
  esac
}

# Sets action_repo and action_ref: the env the composite step passes, else the action's checkout
# path (<runner>/_actions/<owner>/<repo>/<ref>; composite actions do not always get the former).
find_action_identity() {
  action_repo=${GCP_ACTION_REPOSITORY:-}
  action_ref=${GCP_ACTION_REF:-}
  local path
  path=$(gcp_unix_path "${GITHUB_ACTION_PATH:-$action_root}")
  case "$path" in
  */_actions/*/*/*)
    local rest=${path#*/_actions/}
    local owner=${rest%%/*}
    rest=${rest#*/}
    local name=${rest%%/*}
    rest=${rest#*/}
    [ -n "$action_repo" ] || action_repo="$owner/$name"
    [ -n "$action_ref" ] || action_ref=${rest%%/*}
    ;;
  esac
  [ -n "$action_repo" ] || action_repo=${GITHUB_REPOSITORY:-}
}

# Sets version (a release tag such as v0.1.0).
resolve_version() {
  version=${INPUT_VERSION:-}
  if [ -z "$version" ]; then
    case "$action_ref" in
    v[0-9]*.[0-9]*.[0-9]*) version=$action_ref ;;
    v[0-9]*)
      # A moving major tag (v1): the version of the action's own files.
      local tree
      tree=$(sed -n 's/^export const VERSION = "\(.*\)";$/\1/p' "$action_root/src/cli/version.ts" \
        2>/dev/null | head -n 1)
      version=${tree:+v$tree}
      [ -n "$version" ] || version=latest
      ;;
    *) version=latest ;;
    esac
  fi
  if [ "$version" = latest ]; then
    [ -z "${GCP_ACTION_DOWNLOAD_BASE:-}" ] ||
      fail "version \"latest\" cannot be resolved with GCP_ACTION_DOWNLOAD_BASE: give the version input" ||
      return 1
    [ -n "$action_repo" ] || fail "Cannot find the latest release: the action's repository is unknown" ||
      return 1
    local url
    url=$(curl -fsSIL --retry 3 --connect-timeout 20 --max-time 60 -o /dev/null \
      -w '%{url_effective}' "${GITHUB_SERVER_URL:-https://github.com}/$action_repo/releases/latest")
    case "$url" in
    */releases/tag/*) version=${url##*/releases/tag/} ;;
    *) fail "Cannot find the latest release of $action_repo (got \"$url\"): give the version input" ||
      return 1 ;;
    esac
  fi
  case "$version" in
  [0-9]*) version=v$version ;;
  esac
  case "$version" in
  *[!A-Za-z0-9._+-]* | "") fail "Cannot use version \"$version\": not a release tag" ;;
  esac
}

# Sets exe (the verified executable, shell path) and native_exe.
fetch_executable() {
  local target asset base dir name expected got tmp
  target=$(gcp_target "${RUNNER_OS:-}" "${RUNNER_ARCH:-}") ||
    fail "No release executable for RUNNER_OS=\"${RUNNER_OS:-}\" RUNNER_ARCH=\"${RUNNER_ARCH:-}\" (there are Linux X64/ARM64, macOS X64/ARM64, Windows X64)" ||
    return 1
  asset=$(gcp_asset "$version" "$target")
  base=${GCP_ACTION_DOWNLOAD_BASE:-${GITHUB_SERVER_URL:-https://github.com}/$action_repo/releases/download/$version}
  base=${base%/}
  name=go-cache-plugin
  [ "${RUNNER_OS:-}" = Windows ] && name=go-cache-plugin.exe
  if [ -n "${RUNNER_TOOL_CACHE:-}" ]; then
    dir="$(gcp_unix_path "$RUNNER_TOOL_CACHE")/go-cache-plugin/${version#v}/$(printf '%s' "$RUNNER_ARCH" | tr '[:upper:]' '[:lower:]')"
  else
    dir="$state_dir/bin"
  fi
  mkdir -p "$dir" || fail "Cannot create \"$dir\"" || return 1
  exe="$dir/$name"
  curl -fsSL --retry 3 --connect-timeout 20 --max-time 60 -o "$state_dir/SHA256SUMS" \
    "$base/SHA256SUMS" || fail "Cannot download $base/SHA256SUMS" || return 1
  expected=$(gcp_expected_sum "$state_dir/SHA256SUMS" "$asset") ||
    fail "Cannot verify $asset: SHA256SUMS of $version does not list it" || return 1
  if [ -f "$exe" ] && [ "$(gcp_sha256 "$exe")" = "$expected" ]; then
    say "using $exe ($asset, checksum verified)"
  else
    tmp="$dir/.$name.$$.download"
    if ! curl -fsSL --retry 3 --connect-timeout 20 --max-time 600 -o "$tmp" "$base/$asset"; then
      rm -f "$tmp"
      fail "Cannot download $base/$asset"
      return 1
    fi
    got=$(gcp_sha256 "$tmp")
    if [ "$got" != "$expected" ]; then
      rm -f "$tmp"
      fail "Checksum mismatch for $asset: got $got, SHA256SUMS lists $expected"
      return 1
    fi
    chmod +x "$tmp" && mv -f "$tmp" "$exe" || fail "Cannot install $exe" || return 1
    say "downloaded $asset into $exe (checksum verified)"
  fi
  native_exe=$(gcp_native_path "$exe")
}

# Sets read_only (true/false) and the trust-tier variables for the server.
decide_trust() {
  read_only=false
  server_env=()
  [ -n "${INPUT_BUCKET:-}" ] || return 0
  local supported=false wanted explicit=false
  if "$exe" help environment 2>/dev/null | grep -q GOCACHE_READ_ONLY; then
    supported=true
  fi
  case "$(printf '%s' "${INPUT_READ_ONLY:-}" | tr '[:upper:]' '[:lower:]')" in
  "" | auto)
    case "${GITHUB_EVENT_NAME:-}" in
    pull_request | pull_request_target) wanted=true ;;
    *) wanted=false ;;
    esac
    ;;
  *)
    explicit=true
    if truthy "${INPUT_READ_ONLY}"; then wanted=true; else wanted=false; fi
    ;;
  esac
  if $wanted; then
    if $supported; then
      read_only=true
      server_env+=(GOCACHE_READ_ONLY=true)
    elif $explicit; then
      gcp_annotation warning "read-only is set, but go-cache-plugin $version has no --read-only: the bucket stays writable (ignored)"
    else
      gcp_annotation notice "go-cache-plugin $version has no --read-only: this ${GITHUB_EVENT_NAME} job may write to the bucket (the read-only default is ignored)"
    fi
  fi
  if [ -n "${INPUT_READ_PREFIXES:-}" ]; then
    if $supported; then
      server_env+=("GOCACHE_READ_PREFIXES=$INPUT_READ_PREFIXES")
    else
      gcp_annotation notice "go-cache-plugin $version has no --read-prefixes: read-prefixes ignored"
    fi
  fi
  decide_warm_key
}

# Adds the warm key to the server's environment: the input, else one manifest per job and
# platform (the server's working directory is this action's state dir, the same for every job,
# so the plugin's own default would make all jobs of a runner share one). GOCACHE_WARM_KEY in
# the step's env wins; a plugin without warm-up gets nothing.
decide_warm_key() {
  [ -z "${GOCACHE_WARM_KEY:-}" ] || return 0
  "$exe" help environment 2>/dev/null | grep -q GOCACHE_WARM_KEY || return 0
  local key=${INPUT_WARM_KEY:-}
  if [ -z "$key" ]; then
    key="${GITHUB_REPOSITORY:-repo}/${GITHUB_WORKFLOW:-workflow}/${GITHUB_JOB:-job}/${RUNNER_OS:-os}-${RUNNER_ARCH:-arch}"
  fi
  server_env+=("GOCACHE_WARM_KEY=$key")
}

# Prints a free TCP port on 127.0.0.1 (nothing answers a connection to it).
pick_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  return 1
}

# Starts serve; sets pid, http_port, plugin_target. Retries when a picked port was taken.
start_server() {
  local attempt timeout args deadline code
  timeout=${GCP_ACTION_START_TIMEOUT:-30}
  cache_dir=${INPUT_CACHE_DIR:-${RUNNER_TEMP:-/tmp}/go-cache-plugin}
  cache_dir=$(gcp_unix_path "$cache_dir")
  mkdir -p "$cache_dir" || fail "Cannot create the cache directory \"$cache_dir\"" || return 1
  native_cache_dir=$(gcp_native_path "$cache_dir")
  log_file="$state_dir/server.log"
  modproxy=false
  truthy "${INPUT_MODULE_PROXY:-true}" && modproxy=true
  for attempt in 1 2 3; do
    http_port=$(pick_port) || fail "Cannot find a free port on 127.0.0.1" || return 1
    if [ "${RUNNER_OS:-}" = Windows ]; then
      # No Unix socket here: a port on 127.0.0.1.
      plugin_target=$(pick_port) || fail "Cannot find a free port on 127.0.0.1" || return 1
    else
      plugin_target="$state_dir/plugin.sock"
      if [ "${#plugin_target}" -gt 100 ]; then # sun_path holds 104 bytes on macOS
        plugin_target="$(mktemp -d /tmp/gcp.XXXXXX)/plugin.sock" ||
          fail "Cannot create a directory for the plugin socket" || return 1
      fi
      rm -f "$plugin_target"
    fi
    args=(serve "--plugin=$plugin_target" "--http=127.0.0.1:$http_port"
      "--cache-dir=$native_cache_dir" -v)
    $modproxy && args+=(--modproxy)
    [ -n "${INPUT_BUCKET:-}" ] && args+=("--bucket=$INPUT_BUCKET")
    [ -n "${INPUT_REGION:-}" ] && args+=("--region=$INPUT_REGION")
    [ -n "${INPUT_PREFIX:-}" ] && args+=("--prefix=$INPUT_PREFIX")
    if [ -n "${INPUT_ENDPOINT:-}" ]; then
      args+=("--s3-endpoint-url=$INPUT_ENDPOINT")
      # Most S3-compatible servers want path-style URLs: the default with an endpoint.
      truthy "${INPUT_PATH_STYLE:-true}" && args+=(--s3-path-style)
    elif truthy "${INPUT_PATH_STYLE:-false}"; then
      args+=(--s3-path-style)
    fi
    say "starting: $exe ${args[*]}"
    (
      unset GOCACHEPROG # the server must never run go through itself
      for assignment in "${server_env[@]}"; do export "${assignment?}"; done
      cd "$state_dir" && exec nohup "$exe" "${args[@]}"
    ) </dev/null >>"$log_file" 2>&1 &
    pid=$!
    deadline=$((SECONDS + timeout))
    while :; do
      if curl -fsS --max-time 2 -o "$state_dir/vars.json" \
        "http://127.0.0.1:$http_port/debug/vars" 2>/dev/null &&
        grep -q '"counters"' "$state_dir/vars.json"; then
        return 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"
        code=$?
        if [ "$attempt" -lt 3 ] && grep -qi 'in use' "$log_file"; then
          say "port taken, trying another"
          continue 2
        fi
        fail "The server exited with status $code: $(grep -v '^[[:space:]]*$' "$log_file" | tail -n 1)"
        return 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        kill -KILL "$pid" 2>/dev/null
        fail "The server did not answer on 127.0.0.1:$http_port within ${timeout}s: $(tail -n 1 "$log_file")"
        return 1
      fi
      sleep 0.2
    done
  done
  fail "The server could not listen: every port tried was taken"
}

export_variables() {
  gocacheprog="" goproxy="" gosumdb=""
  http="127.0.0.1:$http_port"
  plugin_word=$plugin_target
  # --cache-dir: if the server goes away mid-job, connect answers from the same directory.
  gocacheprog="$(quote_word "$native_exe") connect $(quote_word "$plugin_word") --cache-dir=$(quote_word "$native_cache_dir")"
  if $modproxy; then
    goproxy="http://$http/mod"
    if [ -z "${GOSUMDB:-}" ]; then
      gosumdb="sum.golang.org $goproxy/sumdb/sum.golang.org"
    else
      say "GOSUMDB is set (\"$GOSUMDB\"): left as it is"
    fi
  fi
  local name
  for name in pid exe native_exe http plugin_target plugin_word log_file version modproxy \
    native_cache_dir read_only gocacheprog goproxy gosumdb; do
    printf '%s=%q\n' "$name" "${!name}"
  done >"$state_dir/state"
  {
    printf 'os=%q\n' "${RUNNER_OS:-}"
    printf 'bucket=%q\n' "${INPUT_BUCKET:-}"
    printf 'prev_goproxy=%q\n' "${GOPROXY:-}"
    printf 'prev_gosumdb=%q\n' "${GOSUMDB:-}"
    printf 'prev_gocacheprog=%q\n' "${GOCACHEPROG:-}"
  } >>"$state_dir/state"
  to_env GOCACHEPROG "$gocacheprog"
  [ -z "$goproxy" ] || to_env GOPROXY "$goproxy"
  [ -z "$gosumdb" ] || to_env GOSUMDB "$gosumdb"
  to_env GCP_ACTION_STATE "$(gcp_native_path "$state_dir/state")"
  [ -n "${GITHUB_PATH:-}" ] && gcp_native_path "$(dirname "$exe")" >>"$GITHUB_PATH"
  emit_outputs
  say "serving on $plugin_word (status page: http://$http/)"
  say "GOCACHEPROG=$gocacheprog"
  [ -z "$goproxy" ] || say "GOPROXY=$goproxy"
  [ -z "$gosumdb" ] || say "GOSUMDB=$gosumdb"
}

emit_outputs() {
  to_output enabled true
  to_output version "$version"
  to_output exe "$native_exe"
  to_output gocacheprog "$gocacheprog"
  to_output goproxy "$goproxy"
  to_output gosumdb "$gosumdb"
  to_output plugin "$plugin_word"
  to_output http "$http"
  to_output cache-dir "$native_cache_dir"
  to_output read-only "$read_only"
  to_output log "$(gcp_native_path "$log_file")"
}

# A server an earlier run of this action in the job started, still answering: keep it (its
# variables are exported already) rather than start a second one.
reuse_running_server() {
  [ -f "$state_dir/state" ] || return 1
  # shellcheck disable=SC1091 # written by export_variables with printf %q
  . "$state_dir/state" || return 1
  [ -n "${http:-}" ] && curl -fsS --max-time 2 -o /dev/null "http://$http/debug/vars" 2>/dev/null ||
    return 1
  gcp_annotation notice "A go-cache-plugin server started earlier in this job is running (pid $pid, http://$http/): reusing it; this step's inputs are ignored"
  emit_outputs
}

main() {
  [ -n "${RUNNER_TEMP:-}" ] || fail "RUNNER_TEMP is not set: not on a GitHub Actions runner?" || return 1
  state_dir="$(gcp_unix_path "$RUNNER_TEMP")/go-cache-plugin-action"
  failed_file="$state_dir/failed"
  mkdir -p "$state_dir" || fail "Cannot create \"$state_dir\"" || return 1
  reuse_running_server && return 0
  rm -f "$state_dir/state" "$failed_file"
  command -v curl >/dev/null 2>&1 || fail "curl is not installed" || return 1
  find_action_identity
  resolve_version || return 1
  fetch_executable || return 1
  decide_trust
  start_server || return 1
  export_variables
}

if ! main; then
  [ -n "$reason" ] || reason="setup stopped unexpectedly"
  [ -z "$failed_file" ] || printf '%s\n' "$reason" >"$failed_file" 2>/dev/null
  gcp_annotation warning "Go build cache off: $reason. Go commands run without go-cache-plugin."
  to_output enabled false
fi
exit 0
