#!/usr/bin/env bash
# The GitHub Action's main step (action.yml, run by scripts/action/main.mjs): downloads the
# go-cache-plugin release executable for this runner, checks it against the sha256 input when
# given, else the release's SHA256SUMS (and, with verify-attestation, its build provenance with
# `gh attestation verify`), starts `serve` in the background and exports GOCACHEPROG (and
# GOPROXY/GOSUMDB for the module proxy) to the job's later steps.
#
# Never fails the job: on any problem it prints one ::warning:: annotation saying why, leaves
# GOCACHEPROG unset (go builds run without the plugin) and exits 0.
#
# Never injects: inputs are trimmed of surrounding whitespace (as JavaScript actions read them);
# an input, or a RUNNER_* path, that still holds a line break or other control character turns
# the cache off with that warning (no default stands in: a refused prefix or read-only must not
# become a broader one). Every value goes to $GITHUB_ENV and $GITHUB_OUTPUT in GitHub's
# multi-line form with a random delimiter, every annotation is escaped, and the exported
# GOCACHEPROG is checked to split, as go splits it, into exactly the intended words (a path with
# spaces is reached through a link in a private space-free directory under /tmp, or quoted).
#
# Inputs (main.mjs passes them, `-` spelled `_`): INPUT_BUCKET, INPUT_REGION, INPUT_ENDPOINT,
# INPUT_PATH_STYLE, INPUT_GCS_KEY_FILE, INPUT_PREFIX, INPUT_READ_PREFIXES, INPUT_READ_ONLY, INPUT_WARM_KEY,
# INPUT_MODULE_PROXY, INPUT_VERSION, INPUT_CACHE_DIR, INPUT_SHA256, INPUT_VERIFY_ATTESTATION,
# INPUT_TOKEN (given to gh only, never to the server); GCP_ACTION_REPOSITORY and GCP_ACTION_REF
# (the action's own repository and ref). GitHub's files and facts: GITHUB_ENV, GITHUB_OUTPUT, GITHUB_PATH, RUNNER_OS,
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
short_dir=""    # a private directory under /tmp for the socket and links, when needed
pid=""

# One log line: a line break in what it quotes is shown as \n, never starts a workflow command.
say() {
  local text="$*"
  text=${text//$'\r'/'\r'}
  printf 'go-cache-plugin: %s\n' "${text//$'\n'/'\n'}"
}
fail() {
  reason=$1
  return 1
}
to_env() { gcp_set "${GITHUB_ENV:-}" "$1" "$2"; }
to_output() { gcp_set "${GITHUB_OUTPUT:-}" "$1" "$2"; }
truthy() {
  case "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" in
  true | 1 | yes | on) return 0 ;;
  *) return 1 ;;
  esac
}
# A whole number from a test hook, else the default (never evaluated as arithmetic text).
number_or() {
  case "$1" in
  "" | *[!0-9]*) printf '%s' "$2" ;;
  *) printf '%s' "$1" ;;
  esac
}

# The inputs action.yml passes (INPUT_*), trimmed in place; fails on the first that holds a
# control character, and on a RUNNER_* or action path that does (they reach $GITHUB_ENV,
# $GITHUB_PATH and GOCACHEPROG).
check_inputs() {
  local name value input
  for name in BUCKET REGION ENDPOINT PATH_STYLE GCS_KEY_FILE PREFIX READ_PREFIXES READ_ONLY WARM_KEY \
    MODULE_PROXY VERSION CACHE_DIR SHA256 VERIFY_ATTESTATION; do
    input="INPUT_$name"
    value=$(gcp_trim "${!input:-}")
    printf -v "$input" '%s' "$value"
    if gcp_has_control "$value"; then
      input=$(printf '%s' "$name" | tr '[:upper:]_' '[:lower:]-')
      fail "Cannot use the $input input $(gcp_shown "$value"): it holds a line break or other control character"
      return 1
    fi
  done
  for name in RUNNER_TEMP RUNNER_TOOL_CACHE GITHUB_ACTION_PATH GCP_ACTION_REPOSITORY \
    GCP_ACTION_REF; do
    value=${!name:-}
    if gcp_has_control "$value"; then
      fail "Cannot use $name=$(gcp_shown "$value"): it holds a line break or other control character"
      return 1
    fi
  done
}

# A private directory with a short path free of spaces and quotes under /tmp, made once (mode
# 0700: nobody else can replace what is in it); sets short_dir, or fails.
make_short_dir() {
  [ -z "$short_dir" ] || return 0
  short_dir=$(umask 077 && mktemp -d /tmp/gcp.XXXXXX 2>/dev/null) && gcp_plain_word "$short_dir" || {
    short_dir=""
    return 1
  }
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

# Sets pinned_sum (the sha256 input, lowercase) and verify_attestation (true/false), or fails on
# a value that is neither: a check asked for must never quietly be skipped.
check_verification_inputs() {
  pinned_sum=$(printf '%s' "${INPUT_SHA256:-}" | tr 'A-F' 'a-f')
  case "$pinned_sum" in
  "") ;;
  *[!0-9a-f]*) fail "Cannot use the sha256 input $(gcp_shown "$INPUT_SHA256"): not 64 hexadecimal digits" ||
    return 1 ;;
  *) [ "${#pinned_sum}" -eq 64 ] ||
    fail "Cannot use the sha256 input $(gcp_shown "$INPUT_SHA256"): not 64 hexadecimal digits" ||
    return 1 ;;
  esac
  case "$(printf '%s' "${INPUT_VERIFY_ATTESTATION:-}" | tr '[:upper:]' '[:lower:]')" in
  true | 1 | yes | on) verify_attestation=true ;;
  "" | false | 0 | no | off) verify_attestation=false ;;
  *) fail "Cannot use the verify-attestation input $(gcp_shown "$INPUT_VERIFY_ATTESTATION"): true or false" ;;
  esac
}

# Sets exe (the verified executable, shell path), native_exe and asset.
fetch_executable() {
  local target base dir name expected got tmp source checked
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
  if [ -n "$pinned_sum" ]; then
    expected=$pinned_sum
    source="the sha256 input pins" checked="the sha256 input"
  else
    curl -fsSL --retry 3 --connect-timeout 20 --max-time 60 -o "$state_dir/SHA256SUMS" \
      "$base/SHA256SUMS" || fail "Cannot download $base/SHA256SUMS" || return 1
    expected=$(gcp_expected_sum "$state_dir/SHA256SUMS" "$asset") ||
      fail "Cannot verify $asset: SHA256SUMS of $version does not list it" || return 1
    source="SHA256SUMS lists" checked=SHA256SUMS
  fi
  if [ -f "$exe" ] && [ "$(gcp_sha256 "$exe")" = "$expected" ]; then
    say "using $exe ($asset, checksum verified against $checked)"
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
      fail "Checksum mismatch for $asset: got $got, $source $expected"
      return 1
    fi
    chmod +x "$tmp" && mv -f "$tmp" "$exe" || fail "Cannot install $exe" || return 1
    say "downloaded $asset into $exe (checksum verified against $checked)"
  fi
  native_exe=$(gcp_native_path "$exe")
}

# With verify-attestation: `gh attestation verify` must find a build provenance attestation of
# the executable made by the action's own repository (its release workflow); fails closed when it
# does not, or cannot be asked (no gh, no repository, no answer within 2 minutes).
check_attestation() {
  $verify_attestation || return 0
  command -v gh >/dev/null 2>&1 ||
    fail "Cannot verify the build provenance of $asset: verify-attestation is true, but the gh CLI is not installed" ||
    return 1
  [ -n "$action_repo" ] ||
    fail "Cannot verify the build provenance of $asset: the action's repository is unknown" ||
    return 1
  local out="$state_dir/attestation.log" code
  GH_TOKEN=$gh_token gcp_bounded 120 gh attestation verify "$native_exe" --repo "$action_repo" \
    </dev/null >"$out" 2>&1
  code=$?
  if [ "$code" -ne 0 ]; then
    fail "Cannot verify the build provenance of $asset: gh attestation verify --repo $action_repo exited with status $code: $(grep -v '^[[:space:]]*$' "$out" | tail -n 1)"
    return 1
  fi
  say "build provenance verified: gh attestation verify --repo $action_repo"
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
    key=${key//[[:cntrl:]]/_} # a workflow's name is free text
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
  timeout=$(number_or "${GCP_ACTION_START_TIMEOUT:-}" 30)
  cache_dir=${INPUT_CACHE_DIR:-${RUNNER_TEMP:-/tmp}/go-cache-plugin}
  cache_dir=$(gcp_unix_path "$cache_dir")
  native_cache_dir=$(gcp_native_path "$cache_dir")
  gcp_go_word "$native_cache_dir" >/dev/null ||
    fail "Cannot put $(gcp_shown "$native_cache_dir") into GOCACHEPROG: go has no quoting for a path with both ' and \" (use another cache-dir)" ||
    return 1
  mkdir -p "$cache_dir" || fail "Cannot create the cache directory $(gcp_shown "$cache_dir")" || return 1
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
      # A GOCACHEPROG word without spaces; sun_path holds 104 bytes on macOS.
      if ! gcp_plain_word "$plugin_target" || [ "$(LC_ALL=C && printf '%s' "${#plugin_target}")" -gt 100 ]; then
        make_short_dir || fail "Cannot create a directory for the plugin socket under /tmp" ||
          return 1
        plugin_target="$short_dir/plugin.sock"
      fi
      rm -f "$plugin_target"
    fi
    args=(serve "--plugin=$plugin_target" "--http=127.0.0.1:$http_port"
      "--cache-dir=$native_cache_dir" -v)
    $modproxy && args+=(--modproxy)
    [ -n "${INPUT_BUCKET:-}" ] && args+=("--bucket=$INPUT_BUCKET")
    [ -n "${INPUT_REGION:-}" ] && args+=("--region=$INPUT_REGION")
    [ -n "${INPUT_PREFIX:-}" ] && args+=("--prefix=$INPUT_PREFIX")
    # Google Cloud Storage (bucket: gs://NAME): a credentials file; without it the server finds
    # them as Google's tools do (GOOGLE_APPLICATION_CREDENTIALS from google-github-actions/auth).
    [ -n "${INPUT_GCS_KEY_FILE:-}" ] && args+=("--gcs-key-file=$INPUT_GCS_KEY_FILE")
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

# Sets gocacheprog: `<exe> connect <socket|port> --cache-dir=<dir>` (if the server goes away
# mid-job, connect answers from the same directory). go splits GOCACHEPROG at spaces and honours
# quotes only around a whole word, so an executable path with spaces is replaced by a link in
# the private short directory (Unix), the socket is there already, and what still has spaces
# (the cache directory, or anything on Windows) is a quoted word of its own. Fails, so the cache
# is off rather than every go command broken, unless go's split gives exactly those words.
build_gocacheprog() {
  local exe_word=$native_exe dir_words expected word
  if ! gcp_plain_word "$exe_word" && [ "${RUNNER_OS:-}" != Windows ] && make_short_dir &&
    ln -s "$exe" "$short_dir/go-cache-plugin" 2>/dev/null; then
    exe_word="$short_dir/go-cache-plugin"
  fi
  expected=("$exe_word" connect "$plugin_word")
  if gcp_plain_word "$native_cache_dir"; then
    expected+=("--cache-dir=$native_cache_dir")
  else
    expected+=(--cache-dir "$native_cache_dir")
  fi
  gocacheprog=""
  for word in "${expected[@]}"; do
    word=$(gcp_go_word "$word") ||
      fail "Cannot put $(gcp_shown "$word") into GOCACHEPROG: go has no quoting for a path with both ' and \" (use another cache-dir)" ||
      return 1
    gocacheprog="${gocacheprog:+$gocacheprog }$word"
  done
  if ! gcp_go_split "$gocacheprog" || [ "${#gcp_words[@]}" -ne "${#expected[@]}" ]; then
    fail "Cannot build a GOCACHEPROG that go splits into the intended words: $(gcp_shown "$gocacheprog")"
    return 1
  fi
  local i
  for i in "${!expected[@]}"; do
    [ "${gcp_words[$i]}" = "${expected[$i]}" ] ||
      fail "Cannot build a GOCACHEPROG that go splits into the intended words: $(gcp_shown "$gocacheprog")" ||
      return 1
  done
}

export_variables() {
  gocacheprog="" goproxy="" gosumdb=""
  http="127.0.0.1:$http_port"
  plugin_word=$plugin_target
  build_gocacheprog || return 1
  if $modproxy; then
    goproxy="http://$http/mod"
    if [ -z "${GOSUMDB:-}" ]; then
      gosumdb="sum.golang.org $goproxy/sumdb/sum.golang.org"
    else
      say "GOSUMDB is set (\"$GOSUMDB\"): left as it is"
    fi
  fi
  local name state_file
  state_file=$(gcp_native_path "$state_dir/state")
  # Nothing is written for later steps until every value is known to be one clean line.
  for name in gocacheprog goproxy gosumdb http native_exe native_cache_dir plugin_word version \
    state_file; do
    if gcp_has_control "${!name}"; then
      fail "Cannot export $name $(gcp_shown "${!name}"): it holds a line break or other control character"
      return 1
    fi
  done
  for name in pid exe native_exe http plugin_target plugin_word log_file version modproxy \
    native_cache_dir read_only gocacheprog goproxy gosumdb short_dir; do
    printf '%s=%q\n' "$name" "${!name}"
  done >"$state_dir/state"
  {
    printf 'os=%q\n' "${RUNNER_OS:-}"
    printf 'bucket=%q\n' "${INPUT_BUCKET:-}"
    printf 'prev_goproxy=%q\n' "${GOPROXY:-}"
    printf 'prev_gosumdb=%q\n' "${GOSUMDB:-}"
    printf 'prev_gocacheprog=%q\n' "${GOCACHEPROG:-}"
  } >>"$state_dir/state"
  to_env GOCACHEPROG "$gocacheprog" &&
    { [ -z "$goproxy" ] || to_env GOPROXY "$goproxy"; } &&
    { [ -z "$gosumdb" ] || to_env GOSUMDB "$gosumdb"; } &&
    to_env GCP_ACTION_STATE "$state_file" ||
    fail "Cannot write to GITHUB_ENV" || return 1
  gcp_add_path "${GITHUB_PATH:-}" "$(gcp_native_path "$(dirname "$exe")")" ||
    say "the executable's directory is not added to PATH: its path holds a control character"
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

# After a failure: the server this run started (if any) is stopped, and nothing of it stays.
abandon_server() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  [ -z "$state_dir" ] || rm -f "$state_dir/state"
  remove_short_dir
}

# Removes the private short directory: only what this script puts there.
remove_short_dir() {
  [ -n "$short_dir" ] || return 0
  rm -f "$short_dir/plugin.sock" "$short_dir/go-cache-plugin"
  rmdir "$short_dir" 2>/dev/null
  short_dir=""
}

main() {
  [ -n "${RUNNER_TEMP:-}" ] || fail "RUNNER_TEMP is not set: not on a GitHub Actions runner?" || return 1
  state_dir="$(gcp_unix_path "$RUNNER_TEMP")/go-cache-plugin-action"
  failed_file="$state_dir/failed"
  mkdir -p "$state_dir" || fail "Cannot create \"$state_dir\"" || return 1
  reuse_running_server && return 0
  pid="" short_dir="" # a stale state file's, not this run's
  rm -f "$state_dir/state" "$failed_file" "$state_dir/stopped"
  check_inputs || return 1
  check_verification_inputs || return 1
  command -v curl >/dev/null 2>&1 || fail "curl is not installed" || return 1
  find_action_identity
  resolve_version || return 1
  fetch_executable || return 1
  check_attestation || return 1
  decide_trust
  start_server || return 1
  export_variables
}

# The token is for gh alone: the server and everything it starts never see it.
gh_token=${INPUT_TOKEN:-}
unset INPUT_TOKEN
if ! main; then
  abandon_server
  [ -n "$reason" ] || reason="setup stopped unexpectedly"
  [ -z "$failed_file" ] || printf '%s\n' "$reason" >"$failed_file" 2>/dev/null
  gcp_annotation warning "Go build cache off: $reason. Go commands run without go-cache-plugin."
  to_output enabled false
fi
exit 0
