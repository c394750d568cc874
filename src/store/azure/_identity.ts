/**
 * Entra ID tokens from `@azure/identity`, imported on the first call that needs one: a service
 * principal's secret or certificate (`EnvironmentCredential`), workload identity federation
 * (`WorkloadIdentityCredential`: `AZURE_FEDERATED_TOKEN_FILE` with `AZURE_CLIENT_ID` and
 * `AZURE_TENANT_ID`, as AKS and `azure/login` set up; or, on a GitHub Actions runner whose job
 * may request an ID token (`permissions: id-token: write`), a fresh GitHub OIDC token for
 * `api://AzureADTokenExchange` each time Entra asks for one, so that no file expires under a long
 * job), then managed identity
 * (`ManagedIdentityCredential`: IMDS, App Service's `IDENTITY_ENDPOINT`, Azure Arc, …). This is
 * DefaultAzureCredential's order without its developer tools (the Azure CLI, PowerShell, azd),
 * which the plugin may not run.
 *
 * ## Why the import hides the environment's names
 *
 * The plugin may read only the variables `--allow-env` names (AZURE_*, IDENTITY_*, MSI_*, …).
 * The `debug` package under Azure's HTTP pipeline lists every variable's name when it loads
 * (`Object.keys(process.env)`, looking for `DEBUG_*`), which needs unscoped `--allow-env`. While
 * the library loads, `process.env` is a view of the same variables whose list of names is empty
 * (so `debug` finds no options); reads and writes go through to the real one, so code that runs
 * meanwhile sees the same values. The real one is put back as soon as the import settles.
 *
 * @module
 */

import type { TokenCredential } from "@azure/identity";
import process from "node:process";

/**
 * The credential chain described in the module doc.
 *
 * @param env Reads an environment variable (`undefined` or "" when unset).
 * @returns The chain, or its one member.
 */
export async function defaultCredential(
  env: (name: string) => string | undefined,
): Promise<TokenCredential> {
  const identity = await importIdentity();
  const chain: TokenCredential[] = [];
  if (
    env("AZURE_TENANT_ID") && env("AZURE_CLIENT_ID") &&
    (env("AZURE_CLIENT_SECRET") || env("AZURE_CLIENT_CERTIFICATE_PATH"))
  ) {
    chain.push(new identity.EnvironmentCredential());
  }
  const clientId = env("AZURE_CLIENT_ID");
  const tenantId = env("AZURE_TENANT_ID");
  if (env("AZURE_FEDERATED_TOKEN_FILE") && clientId && tenantId) {
    chain.push(new identity.WorkloadIdentityCredential());
  } else if (
    env("ACTIONS_ID_TOKEN_REQUEST_URL") && env("ACTIONS_ID_TOKEN_REQUEST_TOKEN") && clientId &&
    tenantId
  ) {
    chain.push(
      new identity.ClientAssertionCredential(tenantId, clientId, () => githubIdToken(env)),
    );
  }
  chain.push(
    clientId
      ? new identity.ManagedIdentityCredential({ clientId })
      : new identity.ManagedIdentityCredential(),
  );
  return chain.length === 1 ? chain[0]! : new identity.ChainedTokenCredential(...chain);
}

/** The audience Entra expects in a federated credential's token. */
export const AZURE_TOKEN_EXCHANGE = "api://AzureADTokenExchange";

/**
 * A GitHub Actions OIDC token for Entra's token exchange, asked of the runner
 * (`ACTIONS_ID_TOKEN_REQUEST_URL` with the bearer `ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
 *
 * @param env Reads an environment variable.
 * @param signal Bounds the request. @default 10 s
 * @returns The token (a JWT).
 * @throws {Error} When the runner does not answer with one.
 */
export async function githubIdToken(
  env: (name: string) => string | undefined,
  signal: AbortSignal = AbortSignal.timeout(10_000),
): Promise<string> {
  const url = new URL(env("ACTIONS_ID_TOKEN_REQUEST_URL") ?? "");
  url.searchParams.set("audience", AZURE_TOKEN_EXCHANGE);
  const response = await fetch(url, {
    headers: { authorization: `bearer ${env("ACTIONS_ID_TOKEN_REQUEST_TOKEN")}` },
    signal,
  });
  const body = await response.json().catch(() => undefined) as { value?: unknown } | undefined;
  if (!response.ok || typeof body?.value !== "string") {
    throw new Error(
      `Cannot get a GitHub OIDC token: HTTP ${response.status}` +
        (response.ok ? ", no value" : " (does the job have permissions: id-token: write?)"),
    );
  }
  return body.value;
}

let loading: Promise<typeof import("@azure/identity")> | undefined;

/** Imports `@azure/identity` once, with `process.env`'s names hidden (see the module doc). */
function importIdentity(): Promise<typeof import("@azure/identity")> {
  loading ??= (async () => {
    const real = process.env;
    const view = namesHidden(real);
    process.env = view;
    try {
      return await import("@azure/identity");
    } finally {
      if (process.env === view) process.env = real;
    }
  })();
  loading.catch(() => loading = undefined);
  return loading;
}

/**
 * A view of `env` that reads and writes through to it and lists no names. (A proxy over `env`
 * itself would not do: checking the `ownKeys` answer lists the target's names.)
 */
function namesHidden(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const key = (name: string | symbol) => typeof name === "string" ? name : undefined;
  return new Proxy({} as NodeJS.ProcessEnv, {
    get: (_, name) => key(name) === undefined ? undefined : env[key(name)!],
    set: (_, name, value) => {
      if (key(name) !== undefined) env[key(name)!] = value;
      return true;
    },
    has: (_, name) => key(name) !== undefined && env[key(name)!] !== undefined,
    deleteProperty: (_, name) => {
      if (key(name) !== undefined) delete env[key(name)!];
      return true;
    },
    ownKeys: () => [],
    getOwnPropertyDescriptor: (_, name) => {
      const value = key(name) === undefined ? undefined : env[key(name)!];
      return value === undefined
        ? undefined
        : { value, writable: true, enumerable: true, configurable: true };
    },
  });
}
