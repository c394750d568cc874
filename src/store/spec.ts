/**
 * Which store a `--bucket` names: its kind and settings ({@linkcode StoreSpec}), parsed from the
 * bucket's name, and how reports describe it. Imports nothing, so the command line can parse
 * without loading any store.
 *
 * Bucket names follow the URL schemes of Go's gocloud.dev, which other Go caches use too:
 * `s3://NAME`, `gs://NAME` (Google Cloud Storage), `azblob://CONTAINER` (Azure Blob Storage). A
 * plain name is an S3 bucket, as in tailscale's plugin.
 *
 * @module
 */

/** The kinds of store, as named in logs, metrics and `stats`. */
export type StoreKind = "s3" | "gcs" | "azure";

/** An S3 bucket (or an S3-compatible server). */
export interface S3Spec {
  kind: "s3";
  bucket: string;
  /** "" looks the bucket's region up on first use. */
  region: string;
  /** "" is AWS. */
  endpoint: string;
  pathStyle: boolean;
}

/** A Google Cloud Storage bucket. */
export interface GcsSpec {
  kind: "gcs";
  bucket: string;
  /** A service-account key or external-account (workload identity) file; "" finds credentials as Google's tools do. */
  keyFile: string;
  /** An emulator's or private endpoint's URL; "" is Google's (or `STORAGE_EMULATOR_HOST`). */
  endpoint: string;
  /** `endpoint` is an emulator (`STORAGE_EMULATOR_HOST`): no credentials are sent. */
  emulator: boolean;
}

/** An Azure Blob Storage container. */
export interface AzureSpec {
  kind: "azure";
  container: string;
  /** The storage account; "" takes it from the connection string or `AZURE_STORAGE_ACCOUNT`. */
  account: string;
  /** A connection string (which may name an emulator's endpoint); "" when not given. */
  connectionString: string;
  /** The blob endpoint's URL; "" derives it from the account. */
  endpoint: string;
}

/** Where the remote tier lives. */
export type StoreSpec = S3Spec | GcsSpec | AzureSpec;

/** A bucket name that names no store this program knows. */
export class BucketNameError extends Error {
  override name = "BucketNameError";
}

/**
 * The kind and name a `--bucket` value names: `s3://`, `gs://` and `azblob://` URLs, or a plain
 * S3 bucket name.
 *
 * @param text The flag's value.
 * @returns The kind and the bucket (or container) name.
 * @throws {BucketNameError} For another scheme, or a URL without a name.
 */
export function parseBucketName(text: string): { kind: StoreKind; name: string } {
  const match = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)\/?$/i.exec(text);
  if (!match) {
    if (text.includes("://")) {
      throw new BucketNameError(
        `Invalid bucket ${
          JSON.stringify(text)
        }: want NAME, s3://NAME, gs://NAME or azblob://CONTAINER`,
      );
    }
    return { kind: "s3", name: text };
  }
  const scheme = match[1]!.toLowerCase();
  const name = match[2]!;
  const kind = SCHEMES[scheme];
  if (!kind) {
    throw new BucketNameError(
      `Invalid bucket ${JSON.stringify(text)}: unknown scheme ${scheme}://; ` +
        "want s3://, gs:// or azblob://",
    );
  }
  if (name === "") throw new BucketNameError(`Invalid bucket ${JSON.stringify(text)}: no name`);
  return { kind, name };
}

const SCHEMES: Record<string, StoreKind> = { s3: "s3", gs: "gcs", azblob: "azure" };

/** Each kind's name in log lines (`GCS tier paused …`). */
export const STORE_NAMES: Readonly<Record<StoreKind, string>> = Object.freeze({
  s3: "S3",
  gcs: "GCS",
  azure: "Azure",
});

/** A short description for logs: the kind, the bucket and where it is. */
export function describeStore(spec: StoreSpec): string {
  switch (spec.kind) {
    case "s3":
      return `S3 bucket ${JSON.stringify(spec.bucket)}` +
        (spec.region ? ` region ${spec.region}` : " (region looked up on first use)") +
        (spec.endpoint ? ` endpoint ${spec.endpoint}` : "");
    case "gcs":
      return `Google Cloud Storage bucket ${JSON.stringify(spec.bucket)}` +
        (spec.endpoint ? ` endpoint ${spec.endpoint}` : "");
    case "azure":
      return `Azure container ${JSON.stringify(spec.container)}` +
        (spec.account ? ` account ${spec.account}` : "") +
        (spec.endpoint ? ` endpoint ${spec.endpoint}` : "");
  }
}

/**
 * What identifies the bucket across processes and machines: the breaker's scope and the warm-up
 * manifest's trust scope.
 */
export function storeScope(spec: StoreSpec): string {
  switch (spec.kind) {
    case "s3":
      return `${spec.endpoint || "aws"} ${spec.bucket}`;
    case "gcs":
      return `gs ${spec.endpoint || "google"} ${spec.bucket}`;
    case "azure":
      return `azblob ${spec.endpoint || spec.account} ${spec.container}`;
  }
}

/** The bucket as a URL (`s3://NAME`, `gs://NAME`, `azblob://CONTAINER`), for reports. */
export function bucketUrl(spec: StoreSpec): string {
  switch (spec.kind) {
    case "s3":
      return `s3://${spec.bucket}`;
    case "gcs":
      return `gs://${spec.bucket}`;
    case "azure":
      return `azblob://${spec.container}`;
  }
}

/** Where the store is, for reports: its endpoint, else the cloud's name. */
export function storeLocation(spec: StoreSpec): string {
  switch (spec.kind) {
    case "s3":
      return spec.endpoint || `AWS S3${spec.region ? ` ${spec.region}` : ""}`;
    case "gcs":
      return spec.endpoint || "Google Cloud Storage";
    case "azure":
      return spec.endpoint ||
        (spec.account ? `Azure account ${spec.account}` : "Azure Blob Storage");
  }
}
