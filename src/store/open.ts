/**
 * Opening the store a {@linkcode StoreSpec} names: the one place that knows the kinds of store.
 * Everything above `store/` holds a {@linkcode BucketStore} and never learns which it is.
 *
 * @module
 */

import type { ObjectStore } from "./object_store.ts";
import type { StoreKind, StoreSpec } from "./spec.ts";
import { AwsObjectStore } from "./s3/store.ts";
import { GcsObjectStore } from "./gcs/store.ts";

/** A store on one bucket or container, under a key prefix. */
export interface BucketStore extends ObjectStore {
  /** The store's kind. */
  readonly kind: StoreKind;
  /**
   * A store on the same bucket and connection whose keys live under `sub/` within this one's
   * prefix.
   */
  withPrefix(sub: string): BucketStore;
}

/** Hooks every store calls. */
export interface StoreHooks {
  /** Records a request's latency under a metric name. */
  observe?: (name: string, seconds: number) => void;
  /** Traces each request (`--debug=2`). */
  trace?: (line: string) => void;
}

/**
 * Opens the store a spec names. Nothing is contacted here: credentials and connections are
 * made on the first call, so a slow or unreachable store never delays go's first reply.
 *
 * @param spec Which store.
 * @param hooks Latency and tracing hooks.
 * @returns The store at the bucket's root.
 */
export function openStore(spec: StoreSpec, hooks: StoreHooks = {}): BucketStore {
  switch (spec.kind) {
    case "s3":
      return new AwsObjectStore({
        bucket: spec.bucket,
        region: spec.region,
        endpoint: spec.endpoint,
        pathStyle: spec.pathStyle,
        observe: hooks.observe,
        trace: hooks.trace,
      });
    case "gcs":
      return new GcsObjectStore({
        bucket: spec.bucket,
        keyFile: spec.keyFile,
        ...(spec.emulator ? { endpoint: spec.endpoint } : { apiEndpoint: spec.endpoint }),
        observe: hooks.observe,
        trace: hooks.trace,
      });
    case "azure":
      throw new Error(`The ${spec.kind} store is not built yet`);
  }
}
