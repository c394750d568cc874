/**
 * Which store the flags name: `--bucket` by its URL scheme (a plain name is S3), with each kind's
 * own settings. The result is a {@linkcode StoreSpec} for `src/store/open.ts`; nothing is
 * contacted here.
 *
 * @module
 */

import { BucketNameError, parseBucketName, type StoreKind, type StoreSpec } from "../store/spec.ts";
import { checkEndpoint, UsageError } from "./_values.ts";

/** The flag fields a store spec is made from. */
export interface StoreFlags {
  bucket: string;
  region: string;
  endpoint: string;
  pathStyle: boolean;
  /** `--storage`: "" (by the bucket's scheme), `s3` or `gcs`. */
  storage: string;
  gcsBucket: string;
  gcsKeyFile: string;
  gcsEndpoint: string;
}

/** `--storage` values and the kind each names. */
const STORAGE_KINDS: Record<string, StoreKind> = { s3: "s3", gcs: "gcs" };

/**
 * The store `--bucket` names, or `undefined` without one (the local tier alone).
 *
 * @param flags The parsed store flags.
 * @param env Reads one environment variable.
 * @throws {UsageError} For an unknown scheme or a bad endpoint.
 */
export function storeSpecOf(
  flags: StoreFlags,
  env: (name: string) => string | undefined,
): StoreSpec | undefined {
  const named = namedBucket(flags);
  if (!named) return undefined;
  switch (named.kind) {
    case "s3":
      if (flags.endpoint) checkEndpoint(flags.endpoint);
      return {
        kind: "s3",
        bucket: named.name,
        region: flags.region,
        endpoint: flags.endpoint,
        pathStyle: flags.pathStyle,
      };
    case "gcs":
      return {
        kind: "gcs",
        bucket: named.name,
        keyFile: flags.gcsKeyFile,
        ...gcsEndpoint(flags, env),
      };
    case "azure":
      return {
        kind: "azure",
        container: named.name,
        account: env("AZURE_STORAGE_ACCOUNT") ?? "",
        connectionString: env("AZURE_STORAGE_CONNECTION_STRING") ?? "",
        endpoint: "",
      };
  }
}

/**
 * The bucket the flags name and its kind: `--bucket` by its scheme, `--gcs-bucket`, and
 * `--storage` for a plain name (tailscale's PR #18 spells a GCS bucket
 * `--storage=gcs --gcs-bucket=NAME`).
 */
function namedBucket(flags: StoreFlags): { kind: StoreKind; name: string } | undefined {
  const storage = flags.storage.trim().toLowerCase();
  const chosen = storage === "" ? undefined : STORAGE_KINDS[storage];
  if (storage !== "" && !chosen) {
    throw new UsageError(
      `Invalid value ${JSON.stringify(flags.storage)} for --storage: want ${
        Object.keys(STORAGE_KINDS).join(" or ")
      }`,
    );
  }
  let named: { kind: StoreKind; name: string } | undefined;
  if (flags.bucket) {
    try {
      named = parseBucketName(flags.bucket);
    } catch (error) {
      if (error instanceof BucketNameError) throw new UsageError(error.message);
      throw error;
    }
    // A plain name is the store --storage names.
    if (chosen && !flags.bucket.includes("://")) named = { kind: chosen, name: named.name };
  }
  if (flags.gcsBucket) {
    const gcs = { kind: "gcs" as const, name: flags.gcsBucket.replace(/^gs:\/\//, "") };
    if (named && (named.kind !== "gcs" || named.name !== gcs.name)) {
      throw new UsageError(
        `--gcs-bucket=${flags.gcsBucket} and --bucket=${flags.bucket} name different buckets: ` +
          "give one",
      );
    }
    named = gcs;
  }
  if (chosen && !named) {
    throw new UsageError(
      `--storage=${storage} needs a bucket: --bucket${storage === "gcs" ? " or --gcs-bucket" : ""}`,
    );
  }
  if (chosen && named && named.kind !== chosen) {
    throw new UsageError(
      `--storage=${storage} and ${
        flags.gcsBucket ? `--gcs-bucket=${flags.gcsBucket}` : `--bucket=${flags.bucket}`
      } name different stores: give one`,
    );
  }
  return named;
}

/**
 * Where a GCS bucket is reached: `--gcs-endpoint-url` (a private endpoint, sent credentials),
 * else the emulator `STORAGE_EMULATOR_HOST` names (Google's convention: no credentials), else
 * Google's endpoint ("").
 */
function gcsEndpoint(
  flags: StoreFlags,
  env: (name: string) => string | undefined,
): { endpoint: string; emulator: boolean } {
  if (flags.gcsEndpoint) {
    checkEndpoint(flags.gcsEndpoint, "--gcs-endpoint-url");
    return { endpoint: flags.gcsEndpoint, emulator: false };
  }
  const emulator = env("STORAGE_EMULATOR_HOST") ?? "";
  return { endpoint: emulator, emulator: emulator !== "" };
}
