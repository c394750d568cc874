#!/usr/bin/env bash
# Installs the servers the end-to-end tests start on 127.0.0.1, at pinned versions, with
# `go install` from the Go module proxy: MinIO (S3), toxiproxy (latency and stalls), MinIO's admin
# client mc (users and policies for the trust-tier tests), actionlint (the workflow checks) and
# fake-gcs-server (Google Cloud Storage).
# Also builds promlint (tests/testdata/promlint: client_golang's linter behind
# `promtool check metrics`, for tests/server/metrics_lint_test.ts) and, as root on Debian,
# installs Chromium with apt-get (the status page's headless-browser test).
# Idempotent: a binary already present is kept. Installs into
#   ${GCP_TOOLS_DIR:-$HOME/.cache/go-cache-plugin-tools}/bin
#   (names: minio, toxiproxy-server, mc, actionlint, fake-gcs-server, promlint)
# Usage: scripts/install_test_servers.sh        (MinIO takes about 3 minutes to build)
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
TOXIPROXY_PACKAGE=github.com/Shopify/toxiproxy/v2/cmd/server
TOXIPROXY_VERSION=v2.5.0
# The mc client (user and policy set-up in tests/e2e/trust_tiers_test.ts): the version the
# pinned MinIO's go.mod requires.
MC_MODULE=github.com/minio/mc
MC_VERSION=v0.0.0-20250313080218-cf909e1063a9
ACTIONLINT_PACKAGE=github.com/rhysd/actionlint/cmd/actionlint
ACTIONLINT_VERSION=v1.7.12
# fake-gcs-server: the Google Cloud Storage emulator (JSON API) for the GCS store's tests.
FAKE_GCS_MODULE=github.com/fsouza/fake-gcs-server
FAKE_GCS_VERSION=v1.56.1

tools="${GCP_TOOLS_DIR:-$HOME/.cache/go-cache-plugin-tools}"
bin="$tools/bin"
mkdir -p "$bin"

say() { printf 'install_test_servers: %s\n' "$*" >&2; }

# install NAME PACKAGE@VERSION BUILT_NAME
install() {
  local name=$1 spec=$2 built=$3
  if [ -x "$bin/$name" ]; then
    say "$name: already installed at $bin/$name"
    return 0
  fi
  command -v go >/dev/null || { say "go is not on PATH: cannot install $name"; exit 1; }
  local stage
  stage=$(mktemp -d "$tools/stage.XXXXXX")
  say "$name: go install $spec (into $bin)"
  # A stage dir, so a half-built binary never lands under its final name.
  if ! GOBIN="$stage" GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 go install "$spec" >&2; then
    rm -rf "$stage"
    say "$name: go install failed"
    exit 1
  fi
  mv "$stage/$built" "$bin/$name"
  rm -rf "$stage"
  say "$name: installed $bin/$name"
}

install minio "$MINIO_MODULE@$MINIO_VERSION" minio
install toxiproxy-server "$TOXIPROXY_PACKAGE@$TOXIPROXY_VERSION" server
install mc "$MC_MODULE@$MC_VERSION" mc
install actionlint "$ACTIONLINT_PACKAGE@$ACTIONLINT_VERSION" actionlint
install fake-gcs-server "$FAKE_GCS_MODULE@$FAKE_GCS_VERSION" fake-gcs-server

# curl: tests/e2e/revproxy_test.ts drives the real curl through the caching proxy. It comes from
# the system's packages; without it that test fails in CI (and is skipped elsewhere, saying so).
if ! command -v curl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "curl: apt-get install curl"
    { apt-get update -qq && apt-get install -y -qq curl; } >&2 || say "curl: apt-get install failed"
  else
    say "curl is not on PATH and cannot be installed here (needs root and apt-get)"
  fi
fi

# promlint: built from the module in this repository (its go.sum pins client_golang).
if [ ! -x "$bin/promlint" ]; then
  command -v go >/dev/null || { say "go is not on PATH: cannot build promlint"; exit 1; }
  stage=$(mktemp -d "$tools/stage.XXXXXX")
  say "promlint: go build tests/testdata/promlint (into $bin)"
  if ! (cd "$(dirname "${BASH_SOURCE[0]}")/../tests/testdata/promlint" &&
    GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$stage/promlint" .) >&2; then
    rm -rf "$stage"
    say "promlint: go build failed"
    exit 1
  fi
  mv "$stage/promlint" "$bin/promlint"
  rm -rf "$stage"
  say "promlint: installed $bin/promlint"
fi

# Chromium for the status page test (tests/server/status_page_browser_test.ts): Debian's package,
# installed when missing and this runs as root with apt-get (one apt-get update).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "chromium: apt-get install chromium"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2 ||
    { say "chromium: apt-get install failed"; exit 1; }
fi
