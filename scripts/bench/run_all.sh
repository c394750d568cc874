#!/usr/bin/env bash
# Runs every benchmark behind BENCHMARKS.md, one after another (they must not overlap on a
# 2-core machine), and prints their markdown. Tailscale's plugin is optional: build it outside
# this repository and pass its path in TAILSCALE_PLUGIN, or its columns are skipped with a reason.
#   TAILSCALE_PLUGIN=/path/to/go-cache-plugin scripts/bench/run_all.sh [--quick]
# --quick: fewer rounds (n=3, one cold round, 3 s load tests).
# Results (JSON) land in ${GCP_BENCH_DIR:-/tmp/gcp-bench}/results.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
run=(scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
  --allow-sys=osRelease --allow-run)
n=5 ncold=2 seconds=5
if [ "${1:-}" = "--quick" ]; then n=3 ncold=1 seconds=3; fi
# 1. handshake
timeout 900 "${run[@]}" scripts/bench/handshake.ts --n=21
# 2-4. builds: cold (with uploads), warm local, empty local + warm bucket, server mode
timeout 5400 "${run[@]}" scripts/bench/build.ts --scenarios=cold,warm,s3warm,server --n="$n" --n-cold="$ncold"
# 1b. per-request cost: sequential get round trips, session spawn-to-exit
timeout 900 "${run[@]}" scripts/bench/get_rtt.ts --n="$n"
# 5. module proxy
timeout 1800 "${run[@]}" scripts/bench/modproxy.ts --n="$n" --n-cold="$ncold" --seconds="$seconds"
# 6. read prefixes: the extra round trip only on a miss under the own prefix
timeout 900 "${run[@]}" scripts/bench/read_prefixes.ts --n=300 --rounds="$n"
# 7. caching HTTPS proxy (tailscale's names host:port in its certificate: see BENCHMARKS.md)
timeout 900 "${run[@]}" --unsafely-ignore-certificate-errors=localhost scripts/bench/revproxy.ts \
  --rounds="$n" --seconds="$seconds"
# 8. the stores side by side: S3 on MinIO, Google Cloud Storage on fake-gcs-server
timeout 5400 "${run[@]}" scripts/bench/stores.ts --n="$ncold"
# micro-benchmarks
timeout 600 scripts/deno task bench
