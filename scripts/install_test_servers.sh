#!/usr/bin/env bash
# Installs the servers the end-to-end tests start on 127.0.0.1, at pinned versions, with
# `go install` from the Go module proxy: MinIO (S3), toxiproxy (latency and stalls), MinIO's admin
# client mc (users and policies for the trust-tier tests) and actionlint (the workflow checks).
# Idempotent: a binary already present is kept. Installs into
#   ${GCP_TOOLS_DIR:-$HOME/.cache/go-cache-plugin-tools}/bin
#   (names: minio, toxiproxy-server, mc, actionlint)
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
