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
  /** `--storage`, where the flag exists: `azure` makes a plain `--bucket` a container. */
  storage?: string;
  /** `--azure-account` (AZURE_STORAGE_ACCOUNT by default). */
  azureAccount: string;
  /** `--azure-container`. */
  azureContainer: string;
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
  const azure = azureSpecOf(flags, env);
  if (azure) return azure;
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
      throw new Error("unreachable: azureSpecOf takes azblob:// buckets");
  }
}

/**
 * The `--bucket` a spec stands for, as reports and the rest of the program see it: an Azure
 * container named by `--azure-container` or `--storage=azure` is `azblob://CONTAINER`.
 *
 * @param flags The parsed store flags.
 * @param spec What {@linkcode storeSpecOf} made of them.
 * @returns The bucket's text; "" without a store.
 */
export function bucketOf(flags: StoreFlags, spec: StoreSpec | undefined): string {
  return spec?.kind === "azure" ? `azblob://${spec.container}` : flags.bucket;
}

/**
 * An Azure container: `--bucket=azblob://CONTAINER`, `--azure-container=CONTAINER`, or a plain
 * `--bucket` with `--storage=azure`; the account from `--azure-account` (AZURE_STORAGE_ACCOUNT)
 * or the connection string, which may also name the endpoint (an emulator's).
 */
function azureSpecOf(
  flags: StoreFlags,
  env: (name: string) => string | undefined,
): StoreSpec | undefined {
  const storage = flags.storage ?? "";
  const scheme = /^azblob:\/\//i.test(flags.bucket);
  if (!scheme && !flags.azureContainer && storage !== "azure") return undefined;
  if (storage && storage !== "azure" && (scheme || flags.azureContainer)) {
    throw new UsageError(
      `Invalid --storage=${storage}: an Azure container (azblob:// or --azure-container) ` +
        "wants --storage=azure",
    );
  }
  let container = flags.azureContainer;
  if (flags.bucket) {
    let named = flags.bucket;
    if (scheme) {
      try {
        named = parseBucketName(flags.bucket).name;
      } catch (error) {
        if (error instanceof BucketNameError) throw new UsageError(error.message);
        throw error;
      }
    } else if (flags.bucket.includes("://")) {
      throw new UsageError(
        `Invalid bucket ${JSON.stringify(flags.bucket)} with --storage=azure: ` +
          "want CONTAINER or azblob://CONTAINER",
      );
    }
    if (container && container !== named) {
      throw new UsageError(
        `Conflicting Azure containers: --bucket names ${JSON.stringify(named)}, ` +
          `--azure-container ${JSON.stringify(container)}`,
      );
    }
    container = named;
  }
  if (!container) {
    throw new UsageError("--storage=azure needs a container: --azure-container or --bucket");
  }
  if (!/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(container) && container !== "$root") {
    throw new UsageError(
      `Invalid Azure container ${JSON.stringify(container)}: 3 to 63 lowercase letters, ` +
        "digits and single hyphens, starting with a letter or digit",
    );
  }
  const connectionString = env("AZURE_STORAGE_CONNECTION_STRING") ?? "";
  if (!flags.azureAccount && !connectionString) {
    throw new UsageError(
      `Azure container ${JSON.stringify(container)} needs a storage account: set ` +
        "--azure-account (GOCACHE_AZURE_ACCOUNT), AZURE_STORAGE_ACCOUNT or " +
        "AZURE_STORAGE_CONNECTION_STRING",
    );
  }
  return {
    kind: "azure",
    container,
    account: flags.azureAccount,
    connectionString,
    endpoint: "",
  };
}
