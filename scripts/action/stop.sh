#!/usr/bin/env bash
# The GitHub Action's final step (stop/action.yml, `if: always()`): writes the job summary of
# what the cache did to $GITHUB_STEP_SUMMARY (from `go-cache-plugin stats --format=markdown`,
# asked before stopping; else a table from the server's /debug/vars), then stops the server that
# setup.sh started gracefully (SIGTERM: it lets running go commands finish and flushes the uploads
# it owes, then exits) and waits for it, bounded. Restores GOCACHEPROG, GOPROXY and GOSUMDB.
# Never fails the job: problems are reported in the log and the summary, and it exits 0.
# Never injects: what the summary quotes is escaped Markdown, variables are restored in GitHub's
# multi-line form with a random delimiter, and the server's log is shown with workflow commands
# stopped.
#
# Reads the state file setup.sh wrote ($GCP_ACTION_STATE, else under $RUNNER_TEMP).
# Test hook: GCP_ACTION_STOP_TIMEOUT  seconds to wait for the server to exit (default 150: its own
# bounds are 10 s for running sessions and 120 s for the upload flush).
set -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/action/lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"

say() {
  local text="$*"
  text=${text//$'\r'/'\r'}
  printf 'go-cache-plugin: %s\n' "${text//$'\n'/'\n'}"
}
to_env() { gcp_set "${GITHUB_ENV:-}" "$1" "$2" || say "Cannot restore $1 in GITHUB_ENV"; }
to_summary() { [ -n "${GITHUB_STEP_SUMMARY:-}" ] && printf '%s\n' "$1" >>"$GITHUB_STEP_SUMMARY"; }

# counters_from_vars FILE: the flat "counters" object of /debug/vars as "name value" lines.
counters_from_vars() {
  tr -d '\n\r' <"$1" | sed -n 's/.*"counters"[[:space:]]*:[[:space:]]*{\([^}]*\)}.*/\1/p' |
    tr ',' '\n' | sed -n 's/^[[:space:]]*"\([A-Za-z0-9_]*\)"[[:space:]]*:[[:space:]]*\([0-9.eE+-]*\)[[:space:]]*$/\1 \2/p'
}

# fallback_summary FILE: a Markdown table from /debug/vars, for a plugin without `stats`.
fallback_summary() {
  local counters
  counters=$(counters_from_vars "$1")
  printf '### Go build cache\n\n'
  printf '| | this job |\n| --- | ---: |\n'
  printf '%s\n' "$counters" | awk '
    NF == 2 { value[$1] = $2 }
    function bytes(n,   i, unit) {
      split("B KiB MiB GiB TiB", unit, " "); i = 1
      while (n >= 1024 && i < 5) { n /= 1024; i++ }
      return sprintf(i == 1 ? "%d %s" : "%.1f %s", n, unit[i])
    }
    function row(label, text) { printf("| %s | %s |\n", label, text) }
    function count(key, label) { if (key in value) row(label, value[key] + 0) }
    END {
      gets = value["get_requests"] + 0; hits = value["get_hits"] + 0
      row("go commands served", value["sessions_total"] + 0)
      row("gets", gets)
      row("hits", gets > 0 ? sprintf("%d (%.1f%%)", hits, 100 * hits / gets) : hits)
      count("local_hits", "local hits")
      count("s3_get_hits", "remote hits (S3)")
      count("get_misses", "misses")
      if ("get_hit_bytes" in value) row("bytes served from the cache", bytes(value["get_hit_bytes"]))
      count("put_requests", "outputs stored")
      if ("s3_bytes_down" in value) row("downloaded from S3", bytes(value["s3_bytes_down"]))
      if ("s3_bytes_up" in value) row("uploaded to S3", bytes(value["s3_bytes_up"]))
      if ("s3_wait_ms" in value) row("time waited on S3", sprintf("%.1f s", value["s3_wait_ms"] / 1000))
      count("uploads_failed", "uploads failed")
      count("s3_breaker_trips", "S3 breaker trips")
      count("modproxy_requests", "module proxy requests")
    }'
  printf "\n_Counters from the server's \`/debug/vars\`: this go-cache-plugin has no \`stats\` command._\n"
}

# Sets summary: from `stats`, else /debug/vars, else a line saying there are no statistics.
collect_summary() {
  local vars="$state_dir/vars-final.json" out
  if out=$(gcp_bounded 30 "$exe" stats "--http=$http" --format=markdown 2>"$state_dir/stats.err") &&
    [ -n "$out" ]; then
    summary=$out
  elif curl -fsS --max-time 10 -o "$vars" "http://$http/debug/vars" 2>/dev/null &&
    grep -q '"counters"' "$vars"; then
    summary=$(fallback_summary "$vars")
  else
    summary=$(printf '### Go build cache\n\nNo statistics: the server did not answer on %s.' \
      "$(gcp_markdown_text "$http")")
  fi
}

# Whether the pid is still the server setup.sh started: not gone, not a zombie waiting for its
# (adoptive) parent to reap it, not a reused pid.
server_alive() {
  kill -0 "$pid" 2>/dev/null || return 1
  command -v ps >/dev/null 2>&1 || return 0
  case "$(ps -o stat= -p "$pid" 2>/dev/null)" in *Z*) return 1 ;; esac
  ps -o args= -p "$pid" 2>/dev/null | grep -q serve
}

# Sets stop_note when the server did not stop cleanly.
stop_unix() {
  local limit=${GCP_ACTION_STOP_TIMEOUT:-150} ticks=0
  case "$limit" in "" | *[!0-9]*) limit=150 ;; esac
  server_alive || {
    stop_note="The server had already exited before the end of the job."
    return 0
  }
  say "stopping the server (pid $pid): SIGTERM, then waiting up to ${limit}s for owed uploads"
  kill -TERM "$pid" 2>/dev/null
  while server_alive; do
    if [ "$ticks" -ge $((limit * 10)) ]; then
      kill -KILL "$pid" 2>/dev/null
      stop_note="The server did not exit within ${limit}s of SIGTERM and was killed: uploads still pending were lost."
      return 0
    fi
    sleep 0.1
    ticks=$((ticks + 1))
  done
  say "the server stopped"
}

# Windows: a detached console process cannot be sent Ctrl+C from here, so wait until the server
# is idle (no session, and no upload pending: the uploads_pending gauge where the server has it,
# else upload counters steady for 3 s; at most 120 s), then end it.
stop_windows() {
  local port=${http##*:} winpid vars="$state_dir/vars-idle.json" counters sessions pending
  local last="" now steady=0
  winpid=$(netstat -ano 2>/dev/null | tr -d '\r' |
    awk -v a="127.0.0.1:$port" '$2 == a && $4 == "LISTENING" { print $5; exit }')
  if [ -z "$winpid" ]; then
    stop_note="The server had already exited before the end of the job."
    return 0
  fi
  say "waiting for the server (Windows pid $winpid) to be idle, then ending it"
  for _ in $(seq 1 120); do
    curl -fsS --max-time 2 -o "$vars" "http://$http/debug/vars" 2>/dev/null || break
    counters=$(counters_from_vars "$vars")
    sessions=$(printf '%s\n' "$counters" | awk '$1 == "sessions" { print $2 }')
    pending=$(printf '%s\n' "$counters" | awk '$1 == "uploads_pending" { print $2 }')
    now=$(printf '%s\n' "$counters" | awk '$1 ~ /^uploads_/ { printf("%s=%s ", $1, $2) }')
    if [ "${sessions:-0}" = 0 ]; then
      [ -n "$pending" ] && [ "$pending" = 0 ] && break
      if [ -z "$pending" ] && [ "$now" = "$last" ]; then steady=$((steady + 1)); else steady=0; fi
      [ "$steady" -ge 3 ] && break
    fi
    last=$now
    sleep 1
  done
  taskkill //F //PID "$winpid" >/dev/null 2>&1
  stop_note="Windows: the server was ended once idle; it cannot be signalled to flush, so an upload still in flight may be lost."
}

# Sets shutdown_note from the server's last metrics line (-v prints it on a clean exit).
read_shutdown() {
  local line left failed uploaded
  [ -f "$log_file" ] || return 0
  line=$(grep 'go-cache-plugin: metrics {' "$log_file" | tail -n 1)
  if [ -z "$line" ]; then
    [ -n "$stop_note" ] || stop_note="The server exited without its final report (see the log)."
    return 0
  fi
  [ -n "$bucket" ] || return 0
  left=$(printf '%s\n' "$line" | sed -n 's/.*"uploads_left":\([0-9]*\).*/\1/p')
  failed=$(printf '%s\n' "$line" | sed -n 's/.*"uploads_failed":\([0-9]*\).*/\1/p')
  uploaded=$(printf '%s\n' "$line" | sed -n 's/.*"uploads_done":\([0-9]*\).*/\1/p')
  if [ "${left:-0}" -gt 0 ]; then
    shutdown_note="At shutdown ${left} upload(s) were still pending; they are recorded in the cache directory and retried by a later server on this disk."
  else
    shutdown_note="At shutdown every upload had reached the bucket (${uploaded:-0} done, ${failed:-0} failed)."
  fi
}

main() {
  local state=${GCP_ACTION_STATE:-}
  local temp
  temp=$(gcp_unix_path "${RUNNER_TEMP:-/tmp}")
  state_dir="$temp/go-cache-plugin-action"
  [ -n "$state" ] && state=$(gcp_unix_path "$state") && state_dir=$(dirname "$state")
  [ -n "$state" ] || state="$state_dir/state"
  if [ ! -f "$state" ]; then
    if [ -f "$state_dir/failed" ]; then
      to_summary "$(printf '### Go build cache\n\nNot used in this job: %s.' \
        "$(gcp_markdown_text "$(cat "$state_dir/failed")")")"
      rm -f "$state_dir/failed"
    fi
    say "no server to stop"
    return 0
  fi
  pid="" os="" exe="" http="" log_file="" modproxy=false bucket="" short_dir=""
  prev_goproxy="" prev_gosumdb="" prev_gocacheprog=""
  # shellcheck disable=SC1090 # written by setup.sh with printf %q
  . "$state"
  stop_note="" shutdown_note="" summary=""
  collect_summary
  if [ "$os" = Windows ]; then stop_windows; else stop_unix; fi
  read_shutdown
  [ -z "$shutdown_note" ] || summary=$(printf '%s\n\n%s' "$summary" "$shutdown_note")
  [ -z "$stop_note" ] || summary=$(printf '%s\n\n%s' "$summary" "$stop_note")
  to_summary "$summary"
  to_summary ""
  [ -z "$stop_note" ] || say "$stop_note"
  # Later steps (if any) run go as before the action.
  to_env GOCACHEPROG "$prev_gocacheprog"
  if [ "$modproxy" = true ]; then
    to_env GOPROXY "$prev_goproxy"
    to_env GOSUMDB "$prev_gosumdb"
  fi
  if [ -f "$log_file" ]; then
    # The log quotes what the bucket and go sent: no line of it is a workflow command.
    local token
    token="gcp-$(gcp_random_hex)"
    echo "::group::go-cache-plugin server log (last 40 lines)"
    echo "::stop-commands::$token"
    tail -n 40 "$log_file"
    echo "::$token::"
    echo "::endgroup::"
  fi
  # The private directory setup.sh made for the socket and links (what it put there only).
  case "$short_dir" in
  /tmp/gcp.*)
    rm -f "$short_dir/plugin.sock" "$short_dir/go-cache-plugin"
    rmdir "$short_dir" 2>/dev/null
    ;;
  esac
  rm -f "$state"
}

main || say "stop.sh stopped unexpectedly"
exit 0
