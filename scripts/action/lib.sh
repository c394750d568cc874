# shellcheck shell=bash
# Shared by the GitHub Action's scripts (setup.sh, stop.sh) and the test stand-in
# (tests/action/standin.sh): release asset names, checksums, bounded waits, and every way a value
# leaves for GitHub (file commands, workflow commands, the job summary) or for go (GOCACHEPROG).
# Source it from bash (3.2 or later); it defines functions only. POSIX tools, curl and
# sha256sum/shasum.

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
# escaped as GitHub requires (%, CR, LF), so it stays one line whatever it quotes.
gcp_annotation() {
  local message=$2
  message=${message//'%'/'%25'}
  message=${message//$'\r'/'%0D'}
  message=${message//$'\n'/'%0A'}
  printf '::%s title=go-cache-plugin::%s\n' "$1" "$message"
}

# gcp_has_control TEXT: whether TEXT holds a control character: C0 (line feed, carriage return,
# tab, escape, ...), DEL, or a Unicode line break (NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR).
gcp_has_control() {
  local LC_ALL=C
  case "$1" in
  *[[:cntrl:]]* | *$'\302\205'* | *$'\342\200\250'* | *$'\342\200\251'*) return 0 ;;
  esac
  return 1
}

# gcp_trim TEXT: TEXT without leading and trailing whitespace (as GitHub's JavaScript actions
# read their inputs, so a YAML block scalar's final line break is no control character).
gcp_trim() {
  local text=$1
  text=${text#"${text%%[![:space:]]*}"}
  text=${text%"${text##*[![:space:]]}"}
  printf '%s' "$text"
}

# gcp_shown TEXT: TEXT for a message, on one line: control characters as bash's $'\n' escapes
# (printf %q) and at most 120 characters.
gcp_shown() {
  local text=$1
  [ "${#text}" -le 120 ] || text="${text:0:117}..."
  if gcp_has_control "$text"; then printf '%q' "$text"; else printf '"%s"' "$text"; fi
}

# gcp_random_hex: 32 random hexadecimal digits (/dev/urandom, else bash's $RANDOM).
gcp_random_hex() {
  local hex
  hex=$(od -An -N16 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')
  case "$hex" in
  *[!0-9a-f]* | "") ;;
  *) [ "${#hex}" -eq 32 ] && printf '%s' "$hex" && return 0 ;;
  esac
  printf '%04x' "$RANDOM" "$RANDOM" "$RANDOM" "$RANDOM" "$RANDOM" "$RANDOM" "$RANDOM" "$RANDOM"
}

# gcp_set FILE NAME VALUE: appends NAME=VALUE to a GitHub file command ($GITHUB_ENV,
# $GITHUB_OUTPUT) in GitHub's multi-line form, NAME<<DELIMITER, VALUE, DELIMITER, with a fresh
# random delimiter, so no value can end the block early and add a variable of its own. Refuses
# (status 1, nothing written) a NAME that is not letters, digits, _ and -, and a VALUE that holds
# the delimiter. No FILE (not on a runner): nothing to do.
gcp_set() {
  local file=$1 name=$2 value=$3 delimiter
  [ -n "$file" ] || return 0
  case "$name" in
  "" | [!A-Za-z_]* | *[!A-Za-z0-9_-]*) return 1 ;;
  esac
  delimiter="ghadelimiter_$(gcp_random_hex)"
  case "$value" in
  *"$delimiter"*) return 1 ;;
  esac
  printf '%s<<%s\n%s\n%s\n' "$name" "$delimiter" "$value" "$delimiter" >>"$file"
}

# gcp_add_path FILE DIR: appends DIR to $GITHUB_PATH (one directory a line); refuses (status 1)
# a DIR with a control character, which could add a second line.
gcp_add_path() {
  [ -n "$1" ] || return 0
  [ -n "$2" ] && ! gcp_has_control "$2" || return 1
  printf '%s\n' "$2" >>"$1"
}

# gcp_markdown_text TEXT: TEXT as literal Markdown (GitHub Flavored) for the job summary: every
# ASCII punctuation character backslash-escaped, so no emphasis, link, image, HTML tag, entity,
# table cell or heading can form from it, and control characters (line breaks) as spaces.
gcp_markdown_text() {
  local script='s/[][!"#$%&'"'"'()*+,./:;<=>?@\\^_`{|}~-]/\\&/g'
  printf '%s' "$1" | LC_ALL=C tr '\000-\037\177' ' ' | LC_ALL=C sed -e "$script"
}

# gcp_plain_word TEXT: whether go takes TEXT as one GOCACHEPROG word as it is (not empty; no
# space, tab, line break or quote).
gcp_plain_word() {
  case "$1" in
  "" | *[[:space:]\"\']*) return 1 ;;
  esac
  return 0
}

# gcp_go_word TEXT: TEXT as one GOCACHEPROG word: as it is when plain, else in the quotes go
# honours at the start of a word ("..." or '...', no escapes inside); fails when TEXT holds both
# quote characters or a control character (no spelling go reads back as TEXT).
gcp_go_word() {
  gcp_has_control "$1" && return 1
  if gcp_plain_word "$1"; then
    printf '%s' "$1"
  else
    case "$1" in
    *\"*\'*) return 1 ;;
    *\'*\"*) return 1 ;;
    *\"*) printf "'%s'" "$1" ;;
    *) printf '"%s"' "$1" ;;
    esac
  fi
}

# gcp_go_split TEXT: sets the array gcp_words to the words go makes of a GOCACHEPROG value (as
# cmd/internal/quoted.Split does: split at spaces, tabs and line breaks; a word that starts
# with ' or " runs to the next such quote, without escapes; quotes elsewhere are ordinary
# characters). Fails on an unterminated quote.
gcp_go_split() {
  local text=$1 quote word space=$' \t\n\r'
  gcp_words=()
  while :; do
    text=${text#"${text%%[!$space]*}"}
    [ -n "$text" ] || return 0
    case "$text" in
    [\"\']*)
      quote=${text:0:1}
      text=${text:1}
      case "$text" in
      *"$quote"*) ;;
      *) return 1 ;;
      esac
      word=${text%%"$quote"*}
      text=${text#*"$quote"}
      ;;
    *)
      word=${text%%[$space]*}
      text=${text:${#word}}
      ;;
    esac
    gcp_words+=("$word")
  done
}
