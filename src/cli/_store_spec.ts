/**
 * Which store the flags name: `--bucket` by its URL scheme (a plain name is S3), with each kind's
 * own settings. The result is a {@linkcode StoreSpec} for `src/store/open.ts`; nothing is
 * contacted here.
 *
 * @module
 */

import { BucketNameError, parseBucketName, type StoreSpec } from "../store/spec.ts";
import { checkEndpoint, UsageError } from "./_values.ts";

/** The flag fields a store spec is made from. */
export interface StoreFlags {
  bucket: string;
  region: string;
  endpoint: string;
  pathStyle: boolean;
}

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
  if (!flags.bucket) return undefined;
  let named;
  try {
    named = parseBucketName(flags.bucket);
  } catch (error) {
    if (error instanceof BucketNameError) throw new UsageError(error.message);
    throw error;
  }
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
        keyFile: env("GOOGLE_APPLICATION_CREDENTIALS") ?? "",
        endpoint: env("STORAGE_EMULATOR_HOST") ?? "",
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
