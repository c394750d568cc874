#!/usr/bin/env bash
# The GitHub Action's final step (its post step, scripts/action/post.mjs; or an explicit
# stop/action.yml step with `if: always()`): writes the job summary of what the cache did to
# $GITHUB_STEP_SUMMARY (what `go-cache-plugin stats --format=markdown` prints, asked before
# stopping), then stops the server that setup.sh started gracefully (SIGTERM: it lets running go commands finish and flushes the uploads
# it owes, then exits) and waits for it, bounded. Restores GOCACHEPROG, GOPROXY and GOSUMDB.
# Never fails the job: problems are reported in the log and the summary, and it exits 0.
# Idempotent: run again (the post step after an explicit stop step) it finds the server stopped
# and says so, writing nothing.
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

# Sets summary: what `stats --format=markdown` prints, else a line saying why there is none.
collect_summary() {
  local out code why
  out=$(gcp_bounded 30 "$exe" stats "--http=$http" --format=markdown 2>"$state_dir/stats.err")
  code=$?
  if [ "$code" -eq 0 ] && [ -n "$out" ]; then
    summary=$out
    # Faults as annotations on the job (::error::/::warning::/::notice::, escaped by stats).
    gcp_bounded 30 "$exe" stats "--http=$http" --format=github 2>/dev/null || true
    return 0
  fi
  why=$(grep -v '^[[:space:]]*$' "$state_dir/stats.err" 2>/dev/null | tail -n 1)
  [ -n "$why" ] || why="exit status $code"
  summary=$(printf '### Go build cache\n\nNo statistics: `go-cache-plugin stats` failed for the server on %s: %s.' \
    "$(gcp_markdown_text "$http")" "$(gcp_markdown_text "$why")")
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
  local port=${http##*:} winpid counters sessions pending
  local last="" now steady=0
  winpid=$(netstat -ano 2>/dev/null | tr -d '\r' |
    awk -v a="127.0.0.1:$port" '$2 == a && $4 == "LISTENING" { print $5; exit }')
  if [ -z "$winpid" ]; then
    stop_note="The server had already exited before the end of the job."
    return 0
  fi
  say "waiting for the server (Windows pid $winpid) to be idle, then ending it"
  for _ in $(seq 1 120); do
    # The server's counters as "name value" lines.
    counters=$(gcp_bounded 10 "$exe" stats "--http=$http" --format=counters 2>/dev/null) || break
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
  elif [ "${failed:-0}" -gt 0 ]; then
    shutdown_note="At shutdown no upload was pending, but ${failed} of $((${uploaded:-0} + failed)) had failed: those objects are not in the bucket (see the server log for the cause)."
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
    if [ -f "$state_dir/stopped" ]; then
      say "the server was already stopped earlier in this job ($(cat "$state_dir/stopped")): nothing to do"
      return 0
    fi
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
  # For a second run (the post step after an explicit stop step): nothing left to do.
  printf 'pid %s, %s\n' "$pid" "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" >"$state_dir/stopped" 2>/dev/null
}

unset INPUT_TOKEN # the post step gets the action's inputs; nothing here needs the token
main || say "stop.sh stopped unexpectedly"
exit 0
