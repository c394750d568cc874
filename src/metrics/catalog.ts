/**
 * The catalogue of what `/metrics` exports: every Prometheus family, its type, its HELP text and
 * its labelled series, each read from the flat counters components keep (`get_hits`,
 * `s3_bytes_down`, …, the names `/debug/vars` shows). One table, so that a series is present
 * from the start (at zero), named by the conventions (`_total` counters, `_seconds` and
 * `_bytes` units) and described where it is counted.
 *
 * Hits by tier add up to the gets answered with a hit: `local` is the local tier's own hits,
 * `warm` the hits on outputs the warm-up fetched (from the local tier it filled, or joined while
 * fetching), `s3` lookups answered under the own prefix, `read_prefix` under a read prefix.
 *
 * @module
 */

/** Reads one flat counter; zero when never touched. */
export type CounterReader = (name: string) => number;

/** One series of a family: its labels and how its value is read. */
export interface SeriesSpec {
  /** Label names and values. @default none */
  labels?: Record<string, string>;
  /** The flat counter it reads, or a function of the counters. */
  value: string | ((m: CounterReader) => number);
  /** Multiplies the value (0.001 turns milliseconds into seconds). @default {1} */
  scale?: number;
}

/** One Prometheus family. */
export interface FamilySpec {
  /** The name after `go_cache_plugin_`. */
  name: string;
  /** `counter` names end in `_total`. */
  type: "counter" | "gauge";
  /** The HELP line. */
  help: string;
  /** Its series. */
  series: SeriesSpec[];
}

/** The module proxy's cache classes. */
const CLASSES = ["immutable", "mutable", "sumdb"] as const;

/** The hits of one tier (see the module doc). */
export function hitsByTier(m: CounterReader): Record<string, number> {
  const warmLocal = Math.min(m("warm_local_hits"), m("local_hits"));
  const readPrefix = m("s3_read_prefix_hits");
  return {
    local: Math.max(0, m("local_hits") - warmLocal),
    warm: m("warm_hits"),
    s3: Math.max(0, m("s3_get_hits") - readPrefix),
    "read_prefix": readPrefix,
  };
}

function labelled(
  key: string,
  pairs: Record<string, string | ((m: CounterReader) => number)>,
  extra: Record<string, string> = {},
): SeriesSpec[] {
  return Object.entries(pairs).map(([label, value]) => ({
    labels: { ...extra, [key]: label },
    value,
  }));
}

/**
 * The request-latency histogram each kind of store records (registry names): S3's, Google Cloud
 * Storage's. A histogram's count is the requests made; `stats` adds them up.
 */
export const REQUEST_HISTOGRAMS: readonly string[] = Object.freeze([
  "s3_request_seconds",
  "gcs_request_seconds",
  "azure_request_seconds",
]);

/**
 * The requests made to the object store: the counts of the {@linkcode REQUEST_HISTOGRAMS}.
 *
 * @param histograms Histograms by registry name, as `Metrics.histograms()` or `/debug/vars` give them.
 * @returns Their counts added up.
 */
export function remoteRequests(histograms: Record<string, { count?: unknown }>): number {
  let total = 0;
  for (const name of REQUEST_HISTOGRAMS) total += Number(histograms[name]?.count) || 0;
  return total;
}

/** Every family `/metrics` exports, in order. */
export const FAMILIES: readonly FamilySpec[] = Object.freeze([
  {
    name: "gets_total",
    type: "counter",
    help: "Gets go asked the build cache for (one per action looked up)",
    series: labelled("result", { hit: "get_hits", miss: "get_misses", error: "get_errors" }),
  },
  {
    name: "hits_total",
    type: "counter",
    help: "Gets answered with a hit, by where the output came from: local (the local tier's " +
      "own), warm (fetched by the warm-up), s3 (looked up under --prefix on demand), " +
      "read_prefix (looked up under a --read-prefixes prefix)",
    series: ["local", "warm", "s3", "read_prefix"].map((tier) => ({
      labels: { tier },
      value: (m: CounterReader) => hitsByTier(m)[tier]!,
    })),
  },
  {
    name: "served_bytes_total",
    type: "counter",
    help: "Output bytes handed to go on hits",
    series: [{ value: "get_hit_bytes" }],
  },
  {
    name: "puts_total",
    type: "counter",
    help: "Outputs go stored (puts), by result",
    series: labelled("result", {
      ok: (m) => Math.max(0, m("put_requests") - m("put_errors")),
      error: "put_errors",
    }),
  },
  {
    name: "put_bytes_total",
    type: "counter",
    help: "Output bytes go stored",
    series: [{ value: "put_bytes" }],
  },
  {
    name: "sessions_total",
    type: "counter",
    help: "Go commands served (plugin sessions), by how they ended",
    series: labelled("result", {
      ok: (m) => Math.max(0, m("sessions_total") - m("session_errors")),
      error: "session_errors",
    }),
  },
  {
    name: "sessions_running",
    type: "gauge",
    help: "Go commands being served now",
    series: [{ value: "sessions" }],
  },
  {
    name: "remote_lookups_total",
    type: "counter",
    help: "Lookups in the object store after a local miss, by result (skipped: breaker open; " +
      "too_slow: given up below the throughput floor; corrupt: rejected entry)",
    series: labelled("result", {
      hit: "s3_get_hits",
      miss: "s3_get_misses",
      error: "s3_get_errors",
      "too_slow": "s3_too_slow",
      skipped: "s3_get_skipped",
      corrupt: "s3_corrupt",
    }, { store: "build" }),
  },
  {
    name: "remote_lookups_collapsed_total",
    type: "counter",
    help: "Gets that joined a lookup of the same action already in flight",
    series: [{ value: "s3_get_collapsed" }],
  },
  {
    name: "remote_lookups_sluggish_total",
    type: "counter",
    help: "Lookups answered, but slower than compiling would be (counted toward the breaker)",
    series: [{ value: "s3_get_sluggish" }],
  },
  {
    name: "remote_wait_seconds_total",
    type: "counter",
    help: "Time gets spent waiting on the object store",
    series: [{ value: "s3_wait_ms", scale: 0.001 }],
  },
  {
    name: "remote_downloaded_bytes_total",
    type: "counter",
    help: "Bytes fetched from the object store, by op: lookup (on demand) or warm_up",
    series: labelled("op", { lookup: "s3_bytes_down", "warm_up": "warm_bytes" }),
  },
  {
    name: "remote_delivered_bytes_total",
    type: "counter",
    help: "Output bytes the downloads delivered once decompressed (the warm-up's packs are " +
      "zstd; beside remote_downloaded_bytes_total, the compression saved on the wire), by op",
    series: labelled("op", { lookup: "s3_bytes_down", "warm_up": "warm_raw_bytes" }),
  },
  {
    name: "remote_uploaded_bytes_total",
    type: "counter",
    help: "Bytes uploaded to the object store (objects and records), by store",
    series: labelled("store", { build: "s3_bytes_up", module: "modproxy_store_bytes_up" }),
  },
  {
    name: "uploads_total",
    type: "counter",
    help: "Uploads to the object store, by store and result (skipped: already there or below " +
      "--min-upload-size; read_only: kept local by --read-only)",
    series: [
      ...labelled("result", {
        done: "uploads_done",
        failed: "uploads_failed",
        skipped: "uploads_skipped",
        "read_only": "uploads_skipped_read_only",
      }, { store: "build" }),
      ...labelled("result", {
        done: "modproxy_store_puts",
        failed: "modproxy_store_errors",
        skipped: "modproxy_store_put_skips",
        "read_only": "modproxy_store_uploads_skipped_read_only",
      }, { store: "module" }),
    ],
  },
  {
    name: "uploads_small_total",
    type: "counter",
    help: "Outputs kept local because they are below --min-upload-size",
    series: [{ value: "uploads_small" }],
  },
  {
    name: "uploads_pending",
    type: "gauge",
    help: "Uploads queued or running",
    series: [{ value: "uploads_pending" }],
  },
  {
    name: "uploads_left_total",
    type: "counter",
    help: "Uploads still pending when the wait at close ran out (retried by a later session)",
    series: labelled("store", {
      build: "uploads_left",
      module: "modproxy_store_uploads_left",
    }),
  },
  {
    name: "uploads_resumed_total",
    type: "counter",
    help: "Uploads an earlier session left undone, queued again",
    series: labelled("store", {
      build: "uploads_resumed",
      module: "modproxy_store_uploads_resumed",
    }),
  },
  {
    name: "breaker_open",
    type: "gauge",
    help: "1 while the store's circuit breaker has the object store paused or disabled",
    series: labelled("store", { build: "s3_breaker_open", module: "modproxy_store_breaker_open" }),
  },
  {
    name: "breaker_trips_total",
    type: "counter",
    help: "Times the store's circuit breaker opened",
    series: labelled("store", {
      build: "s3_breaker_trips",
      module: "modproxy_store_breaker_trips",
    }),
  },
  {
    name: "breaker_shared_total",
    type: "counter",
    help: "Times a session found the object store paused by an earlier process",
    series: labelled("store", {
      build: "s3_breaker_shared",
      module: "modproxy_store_breaker_shared",
    }),
  },
  {
    name: "remote_uncaught_errors_total",
    type: "counter",
    help: "Stray errors from the S3 client contained instead of ending the process",
    series: [{ value: "s3_uncaught" }],
  },
  {
    name: "warm_entries_total",
    type: "counter",
    help: "Entries the warm-up wrote to the local tier (outputs verified)",
    series: [{ value: "warm_entries" }],
  },
  {
    name: "warm_requests_total",
    type: "counter",
    help: "Object store requests the warm-up made (manifest, packs, outputs)",
    series: [{ value: "warm_requests" }],
  },
  {
    name: "warm_jumped_total",
    type: "counter",
    help: "Gets for a manifest entry not fetched yet, fetched at once",
    series: [{ value: "warm_jumped" }],
  },
  {
    name: "warm_hedged_total",
    type: "counter",
    help: "Gets that waited on a warm-up fetch past 150 ms and also looked up themselves",
    series: [{ value: "warm_hedged" }],
  },
  {
    name: "warm_wasted_bytes",
    type: "gauge",
    help: "Bytes the warm-up fetched that go has not asked for",
    series: [{ value: "warm_wasted_bytes" }],
  },
  {
    name: "warm_duration_seconds",
    type: "gauge",
    help: "How long the warm-up ran",
    series: [{ value: "warm_ms", scale: 0.001 }],
  },
  {
    name: "warm_manifests_total",
    type: "counter",
    help: "Warm-up manifests, by result: written, skipped (nothing new), error (not written), " +
      "corrupt (read but ignored)",
    series: labelled("result", {
      written: "warm_manifest_writes",
      skipped: "warm_manifest_skipped",
      error: "warm_manifest_errors",
      corrupt: "warm_manifest_corrupt",
    }),
  },
  {
    name: "warm_unvouched_entries",
    type: "gauge",
    help: "Local hits left out of the last manifest written: no manifest of this tier named " +
      "them, so this session cannot vouch for them (another tier may share the directory)",
    series: [{ value: "warm_unvouched" }],
  },
  {
    name: "warm_packs_missing_total",
    type: "counter",
    help: "Packs a manifest named that the own prefix does not hold, dropped with their entries",
    series: [{ value: "warm_packs_missing" }],
  },
  {
    name: "warm_manifest_entries",
    type: "gauge",
    help: "Entries in the last warm-up manifest written",
    series: [{ value: "warm_manifest_entries" }],
  },
  {
    name: "warm_packs_written_total",
    type: "counter",
    help: "Packs of small outputs written to the object store",
    series: [{ value: "warm_packs_written" }],
  },
  {
    name: "modproxy_requests_total",
    type: "counter",
    help: "Module proxy requests, by result (not_found: answered 404 or 410)",
    series: labelled("result", {
      ok: (m) =>
        Math.max(0, m("modproxy_requests") - m("modproxy_not_found") - m("modproxy_errors")),
      "not_found": "modproxy_not_found",
      error: "modproxy_errors",
    }),
  },
  {
    name: "modproxy_cache_total",
    type: "counter",
    help: "Module proxy cache lookups, by class and result",
    series: CLASSES.flatMap((cls) =>
      labelled("result", {
        hit: `modproxy_${cls}_hits`,
        miss: `modproxy_${cls}_misses`,
        "negative_hit": `modproxy_${cls}_negative_hits`,
        stale: `modproxy_${cls}_stale`,
        "store_hit": `modproxy_${cls}_store_hits`,
        "not_found": `modproxy_${cls}_not_found`,
        "upstream_error": `modproxy_${cls}_upstream_errors`,
      }, { class: cls })
    ),
  },
  {
    name: "modproxy_served_bytes_total",
    type: "counter",
    help: "Module proxy bytes served from its cache, by class",
    series: CLASSES.map((cls) => ({
      labels: { class: cls },
      value: `modproxy_${cls}_bytes_served`,
    })),
  },
  {
    name: "modproxy_upstream_fetches_total",
    type: "counter",
    help: "Module proxy fetches from the upstream, by result",
    series: labelled("result", {
      ok: (m) =>
        Math.max(
          0,
          m("modproxy_upstream_fetches") - m("modproxy_upstream_not_found") -
            m("modproxy_upstream_errors"),
        ),
      "not_found": "modproxy_upstream_not_found",
      error: "modproxy_upstream_errors",
    }),
  },
  {
    name: "modproxy_upstream_bytes_total",
    type: "counter",
    help: "Module proxy bytes fetched from the upstream",
    series: [{ value: "modproxy_upstream_bytes" }],
  },
  {
    name: "modproxy_sumdb_hits_total",
    type: "counter",
    help: "Checksum database requests answered from the cache",
    series: [{ value: "modproxy_sumdb_hits" }],
  },
  {
    name: "modproxy_verify_failures_total",
    type: "counter",
    help: "Module files that failed verification (not served)",
    series: [{ value: "modproxy_verify_failures" }],
  },
  {
    name: "modproxy_evictions_total",
    type: "counter",
    help: "Module files removed from the cache after failing verification",
    series: [{ value: "modproxy_evictions" }],
  },
  {
    name: "modproxy_store_fills_total",
    type: "counter",
    help: "Module files filled from the object store, by source",
    series: labelled("source", {
      prefix: (m) => Math.max(0, m("modproxy_store_fills") - m("modproxy_store_read_prefix_hits")),
      "read_prefix": "modproxy_store_read_prefix_hits",
    }),
  },
  {
    name: "modproxy_store_fill_bytes_total",
    type: "counter",
    help: "Module file bytes filled from the object store",
    series: [{ value: "modproxy_store_fill_bytes" }],
  },
  {
    name: "modproxy_store_skipped_total",
    type: "counter",
    help: "Module fills that skipped the object store because its breaker was open",
    series: [{ value: "modproxy_store_skipped" }],
  },
  {
    name: "revproxy_requests_total",
    type: "counter",
    help: "Requests the caching proxy (--revproxy) answered, by how they arrived",
    series: labelled("via", {
      "absolute_form": (m) => Math.max(0, m("revproxy_requests") - m("revproxy_intercepted")),
      intercepted: "revproxy_intercepted",
    }),
  },
  {
    name: "revproxy_tunnels_total",
    type: "counter",
    help: "CONNECT tunnels to hosts the caching proxy does not cache, by result",
    series: labelled("result", {
      ok: (m) => Math.max(0, m("revproxy_tunnels") - m("revproxy_tunnel_errors")),
      error: "revproxy_tunnel_errors",
    }),
  },
  {
    name: "revproxy_refused_total",
    type: "counter",
    help: "Proxy requests refused: client not allowed, bad target, oversized or malformed",
    series: [{ value: "revproxy_refused" }],
  },
  {
    name: "revproxy_hits_total",
    type: "counter",
    help: "Caching proxy answers served from the cache, by tier",
    series: labelled("tier", {
      memory: "revproxy_hits_memory",
      local: "revproxy_hits_local",
      remote: "revproxy_hits_remote",
    }),
  },
  {
    name: "revproxy_fetches_total",
    type: "counter",
    help: "Caching proxy fetches from the origin, by what was kept of the answer",
    series: labelled("kept", {
      disk: "revproxy_fetch_cached",
      memory: "revproxy_fetch_memory",
      none: "revproxy_fetch_uncached",
    }),
  },
  {
    name: "revproxy_origin_fetches_total",
    type: "counter",
    help: "Requests the caching proxy sent to origins",
    series: [{ value: "revproxy_fetches" }],
  },
  {
    name: "revproxy_collapsed_total",
    type: "counter",
    help: "Caching proxy requests that joined a fetch of the same URL already under way",
    series: [{ value: "revproxy_collapsed" }],
  },
  {
    name: "revproxy_bytes_total",
    type: "counter",
    help: "Caching proxy body bytes, by direction",
    series: labelled("direction", {
      served: "revproxy_bytes_served",
      fetched: "revproxy_bytes_fetched",
    }),
  },
  {
    name: "revproxy_errors_total",
    type: "counter",
    help: "Caching proxy faults that cost a fetch or a failed answer, by kind",
    series: labelled("kind", {
      origin: "revproxy_upstream_errors",
      disk: "revproxy_disk_errors",
      corrupt: "revproxy_corrupt",
      store: "revproxy_store_errors",
    }),
  },
  {
    name: "revproxy_store_fills_total",
    type: "counter",
    help: "Caching proxy objects filled from the object store, by source",
    series: labelled("source", {
      prefix: (m) => Math.max(0, m("revproxy_store_fills") - m("revproxy_store_read_prefix_hits")),
      "read_prefix": "revproxy_store_read_prefix_hits",
    }),
  },
  {
    name: "revproxy_store_fill_bytes_total",
    type: "counter",
    help: "Caching proxy object bytes filled from the object store",
    series: [{ value: "revproxy_store_fill_bytes" }],
  },
  {
    name: "revproxy_store_skipped_total",
    type: "counter",
    help: "Caching proxy fills that skipped the object store because its breaker was open",
    series: [{ value: "revproxy_store_skipped" }],
  },
  {
    name: "revproxy_store_uploads_total",
    type: "counter",
    help: "Caching proxy objects sent to the object store, by result",
    series: labelled("result", {
      done: "revproxy_store_puts",
      skipped: "revproxy_store_put_skips",
      "read_only": "revproxy_store_uploads_skipped_read_only",
      left: "revproxy_store_uploads_left",
      resumed: "revproxy_store_uploads_resumed",
    }),
  },
  {
    name: "revproxy_store_uploaded_bytes_total",
    type: "counter",
    help: "Caching proxy object bytes uploaded to the object store",
    series: [{ value: "revproxy_store_bytes_up" }],
  },
]);

/**
 * The flat counters the catalogue reads, for {@linkcode FAMILIES}' completeness test and for the
 * fallback of names it does not know.
 */
export function catalogued(): Set<string> {
  // Sums of series exported by their parts: gets by result, bytes served by class.
  const names = new Set<string>(["get_requests", "modproxy_bytes_served"]);
  const probe: CounterReader = (name) => {
    names.add(name);
    return 0;
  };
  for (const family of FAMILIES) {
    for (const series of family.series) {
      if (typeof series.value === "string") names.add(series.value);
      else series.value(probe);
    }
  }
  return names;
}
