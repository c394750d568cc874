/**
 * Tests of `src/store/azure/store.ts`: the Azure adapter passes the store conformance suite
 * against a real Azurite on loopback (Shared Key from Azurite's documented connection string),
 * including a closed port (`unreachable`) and a missing container (`config`).
 *
 * @module
 */

import { AzureBlobStore } from "../../../src/store/mod.ts";
import { needs } from "../../_util/go.ts";
import { freePort } from "../../_util/net.ts";
import { findAzurite, startAzurite } from "../../_util/azurite.ts";
import { storeConformance } from "../_conformance.ts";

// `deno task test:unit` (GCP_SKIP_TEST_SERVERS=1) runs without test servers; the Linux gate runs
// this test with Azurite, and there a missing Azurite fails it.
const unitOnly = Deno.env.get("GCP_SKIP_TEST_SERVERS") === "1";
const ignore = unitOnly ||
  await needs("Azurite (scripts/install_test_servers.sh)", findAzurite());

storeConformance("Azure (Azurite)", async () => {
  const azurite = await startAzurite();
  const on = (container: string, endpoint = azurite.endpoint) =>
    new AzureBlobStore({
      container,
      connectionString: azurite.connectionString(endpoint),
      // Nothing from the machine's environment: the connection string alone.
      env: () => undefined,
    });
  return {
    store: on(azurite.container),
    unreachable: on(azurite.container, `http://127.0.0.1:${freePort()}/devstoreaccount1`),
    missingBucket: on("gcp-no-such-container"),
    [Symbol.asyncDispose]: () => azurite[Symbol.asyncDispose](),
  };
}, { ignore });
