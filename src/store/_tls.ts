/**
 * The private CA bundle the AWS tools trust for S3 endpoints: `AWS_CA_BUNDLE`, else the
 * `ca_bundle` of the selected profile (`AWS_PROFILE`, else `default`) in the shared config file
 * (`AWS_CONFIG_FILE`, else `~/.aws/config`). Its certificates are trusted on every request path
 * of the S3 tier: `fetch` for every GET, HEAD and PUT (a `Deno.HttpClient`, which adds them to
 * the built-in roots), and the SDK's node:https agent (through `ca`, which replaces the roots, as
 * `AWS_CA_BUNDLE` does for the AWS CLI; Deno's `tls.rootCertificates` would need `--allow-sys=ca`,
 * which the plugin does not have).
 *
 * Loaded once, on the first remote call; a bundle that is named but cannot be read or holds no
 * usable certificate is a configuration error, reported in one line.
 *
 * @module
 */

import { errorMessage } from "../util/mod.ts";
import { StoreError } from "./object_store.ts";

/** Where a CA bundle was named. */
interface BundleSource {
  path: string;
  /** For messages: `AWS_CA_BUNDLE` or `ca_bundle of profile "dev" in "/home/u/.aws/config"`. */
  origin: string;
}

/** A loaded CA bundle and the clients that trust it. */
export class CaBundle {
  /** The bundle's path as named. */
  readonly path: string;
  /** Where it was named, for messages. */
  readonly origin: string;
  /** Its PEM certificates, one per entry. */
  readonly certificates: string[];
  /** A `fetch` client that trusts the bundle besides the built-in roots. */
  readonly client: Deno.HttpClient;

  private constructor(source: BundleSource, certificates: string[], client: Deno.HttpClient) {
    this.path = source.path;
    this.origin = source.origin;
    this.certificates = certificates;
    this.client = client;
  }

  /**
   * Finds and reads the bundle the AWS settings name.
   *
   * @param env Reads an environment variable (`undefined` or "" when unset).
   * @returns The bundle, or `undefined` when none is named.
   * @throws {StoreError} Of kind `config` when the named file cannot be read or parsed.
   */
  static async load(env: (name: string) => string | undefined): Promise<CaBundle | undefined> {
    const source = await findBundle(env);
    return source && await CaBundle.read(source, env);
  }

  /**
   * Reads a bundle named elsewhere (another cloud's setting, such as gcloud's
   * `CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE`).
   *
   * @param source The file's path and, for messages, where it was named.
   * @param env Reads an environment variable (for `~/` in the path).
   * @returns The bundle.
   * @throws {StoreError} Of kind `config` when the file cannot be read or parsed.
   */
  static async read(
    source: { path: string; origin: string },
    env: (name: string) => string | undefined,
  ): Promise<CaBundle> {
    const what = `the CA bundle ${JSON.stringify(source.path)} (${source.origin})`;
    let text: string;
    try {
      text = await Deno.readTextFile(expandHome(source.path, env));
    } catch (error) {
      throw new StoreError(`Cannot read ${what}: ${firstLine(error)}`, "config", { cause: error });
    }
    const certificates = text.match(PEM_CERTIFICATE) ?? [];
    if (certificates.length === 0) {
      throw new StoreError(`Cannot use ${what}: it holds no PEM certificate`, "config");
    }
    let client: Deno.HttpClient;
    try {
      client = Deno.createHttpClient({ caCerts: certificates });
    } catch (error) {
      throw new StoreError(
        `Cannot use ${what}: a certificate in it cannot be parsed: ${firstLine(error)}`,
        "config",
        { cause: error },
      );
    }
    return new CaBundle(source, certificates, client);
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----/g;

/** `AWS_CA_BUNDLE`, else the selected profile's `ca_bundle`. */
async function findBundle(
  env: (name: string) => string | undefined,
): Promise<BundleSource | undefined> {
  const fromEnv = env("AWS_CA_BUNDLE");
  if (fromEnv) return { path: fromEnv, origin: "AWS_CA_BUNDLE" };
  const home = env("HOME") || env("USERPROFILE");
  const configFile = env("AWS_CONFIG_FILE") || (home ? `${home}/.aws/config` : undefined);
  if (!configFile) return undefined;
  let text: string;
  try {
    text = await Deno.readTextFile(expandHome(configFile, env));
  } catch {
    return undefined; // no shared config: nothing named (the SDK reports a broken one itself)
  }
  const profile = env("AWS_PROFILE") || "default";
  const path = profileValue(text, profile, "ca_bundle");
  return path
    ? { path, origin: `ca_bundle of profile ${JSON.stringify(profile)} in ${configFile}` }
    : undefined;
}

/**
 * One setting of a profile in an AWS shared config file: `[profile NAME]` (or `[default]`) and
 * `key = value` lines; `#` and `;` start comments.
 */
function profileValue(text: string, profile: string, key: string): string | undefined {
  let inProfile = false;
  let value: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/(^|\s)[#;].*$/, "").trim();
    if (line === "") continue;
    const section = /^\[\s*(.*?)\s*\]$/.exec(line);
    if (section) {
      const name = section[1]!.replace(/^profile\s+/, "");
      inProfile = name === profile && (profile === "default" || section[1] !== profile);
      continue;
    }
    // Indented lines continue a nested setting (`s3 =` sub-keys); only top-level keys count.
    if (!inProfile || /^\s/.test(raw)) continue;
    const equals = line.indexOf("=");
    if (equals > 0 && line.slice(0, equals).trim() === key) {
      value = line.slice(equals + 1).trim();
    }
  }
  return value || undefined;
}

function expandHome(path: string, env: (name: string) => string | undefined): string {
  const home = env("HOME") || env("USERPROFILE");
  return home && (path === "~" || path.startsWith("~/")) ? home + path.slice(1) : path;
}

function firstLine(error: unknown): string {
  const text = errorMessage(error);
  return text.split("\n")[0]!.trim();
}
