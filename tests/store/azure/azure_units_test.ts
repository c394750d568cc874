/**
 * The Azure adapter's pure parts: connection strings, the Shared Key string to sign, and the
 * classification of Blob Storage's error answers into StoreError kinds.
 */
import assert from "node:assert/strict";
import * as crypto from "node:crypto";
import {
  accountOfEndpoint,
  DEV_ACCOUNT_KEY,
  parseConnectionString,
} from "../../../src/store/azure/_connection_string.ts";
import { SharedKeySigner } from "../../../src/store/azure/_shared_key.ts";
import { azureResponseError, classifyAzure } from "../../../src/store/azure/_errors.ts";
import { networkError } from "../../../src/store/_errors.ts";

Deno.test("parseConnectionString() reads Azurite's documented string", () => {
  const settings = parseConnectionString(
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
      `AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;`,
  );
  assert.deepEqual(settings, {
    account: "devstoreaccount1",
    blobEndpoint: "http://127.0.0.1:10000/devstoreaccount1",
    accountKey: DEV_ACCOUNT_KEY,
    sas: "",
  });
});

Deno.test("parseConnectionString() derives the endpoint from the account and suffix", () => {
  assert.equal(
    parseConnectionString("AccountName=acme;AccountKey=AAAA").blobEndpoint,
    "https://acme.blob.core.windows.net",
  );
  assert.equal(
    parseConnectionString(
      "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=AAAA;" +
        "EndpointSuffix=core.chinacloudapi.cn",
    ).blobEndpoint,
    "https://acme.blob.core.chinacloudapi.cn",
  );
});

Deno.test("parseConnectionString() takes UseDevelopmentStorage and a SAS", () => {
  const dev = parseConnectionString("UseDevelopmentStorage=true");
  assert.equal(dev.blobEndpoint, "http://127.0.0.1:10000/devstoreaccount1");
  assert.equal(dev.accountKey, DEV_ACCOUNT_KEY);
  const sas = parseConnectionString(
    "BlobEndpoint=https://acme.blob.core.windows.net/;SharedAccessSignature=?sv=2023&sig=x%3D",
  );
  assert.equal(sas.sas, "sv=2023&sig=x%3D");
  assert.equal(sas.account, "");
  assert.equal(accountOfEndpoint(sas.blobEndpoint), "acme");
  assert.equal(accountOfEndpoint("http://127.0.0.1:10000/devstoreaccount1"), "devstoreaccount1");
});

Deno.test("parseConnectionString() rejects a string without an account, or a bad pair", () => {
  assert.throws(() => parseConnectionString("AccountKey=AAAA"), /names neither AccountName/);
  assert.throws(() => parseConnectionString("AccountName=a;garbage"), /is not Key=Value/);
  assert.throws(
    () => parseConnectionString("AccountName=a;BlobEndpoint=ftp://x"),
    /is not http\(s\)/,
  );
});

Deno.test("SharedKeySigner signs the verb, standard headers, x-ms-* and the resource", () => {
  const signer = new SharedKeySigner(crypto, "acme", DEV_ACCOUNT_KEY);
  const headers = {
    "x-ms-version": "2023-11-03",
    "x-ms-date": "Mon, 07 Dec 2026 22:00:00 GMT",
    "x-ms-blob-type": "BlockBlob",
    "content-type": "application/octet-stream",
    "content-length": "5",
  };
  const request = { method: "PUT", path: "/gocache/action/0a/ab%20c", headers };
  assert.equal(
    signer.stringToSign(request),
    "PUT\n\n\n5\n\napplication/octet-stream\n\n\n\n\n\n\n" +
      "x-ms-blob-type:BlockBlob\nx-ms-date:Mon, 07 Dec 2026 22:00:00 GMT\n" +
      "x-ms-version:2023-11-03\n/acme/gocache/action/0a/ab%20c",
  );
  // A zero Content-Length is signed as empty (versions since 2015-02-21).
  const empty = signer.stringToSign({ ...request, headers: { ...headers, "content-length": "0" } });
  assert.ok(empty.startsWith("PUT\n\n\n\n\napplication/octet-stream\n"));
  const expected = crypto.createHmac("sha256", Buffer.from(DEV_ACCOUNT_KEY, "base64"))
    .update(signer.stringToSign(request)).digest("base64");
  assert.equal(signer.authorization(request), `SharedKey acme:${expected}`);
  assert.throws(() => new SharedKeySigner(crypto, "acme", "not base64!"), /not base64/);
});

function answer(status: number, code: string, body = ""): Response {
  return new Response(body || null, {
    status,
    headers: code ? { "x-ms-error-code": code } : {},
  });
}

Deno.test("azureResponseError() reads the code from the header or the XML body", async () => {
  const fromHeader = await azureResponseError(answer(404, "BlobNotFound"), "HEAD");
  assert.equal(fromHeader.name, "BlobNotFound");
  assert.ok(fromHeader.missing);
  const fromBody = await azureResponseError(
    answer(
      403,
      "",
      '<?xml version="1.0"?><Error><Code>AuthenticationFailed</Code>' +
        "<Message>Server failed to authenticate the request.\nRequestId:1</Message></Error>",
    ),
    "GET",
  );
  assert.equal(fromBody.name, "AuthenticationFailed");
  assert.equal(fromBody.message, "Server failed to authenticate the request.");
  assert.equal((await azureResponseError(answer(404, ""), "HEAD")).name, "NotFound");
  assert.ok(!(await azureResponseError(answer(404, "ContainerNotFound"), "GET")).missing);
});

Deno.test("classifyAzure() sorts failures into config, unreachable, timeout and other", async () => {
  const kind = async (status: number, code: string) =>
    classifyAzure(await azureResponseError(answer(status, code), "GET"), "Cannot GET").kind;
  assert.equal(await kind(404, "ContainerNotFound"), "config");
  assert.equal(await kind(403, "AuthorizationPermissionMismatch"), "config");
  assert.equal(await kind(403, "AuthenticationFailed"), "config");
  assert.equal(await kind(400, "InvalidResourceName"), "config");
  assert.equal(await kind(401, ""), "config");
  assert.equal(await kind(503, "ServerBusy"), "other");
  assert.equal(await kind(500, "InternalError"), "other");
  const refused = networkError(new TypeError("tcp connect error: Connection refused"), "h:1");
  assert.equal(classifyAzure(refused, "Cannot GET").kind, "unreachable");
  const signal = AbortSignal.abort(new DOMException("late", "TimeoutError"));
  const timeout = classifyAzure(new DOMException("late", "TimeoutError"), "Cannot GET", signal);
  assert.equal(timeout.kind, "timeout");
  assert.match(timeout.message, /deadline exceeded/);
  const head = classifyAzure(
    await azureResponseError(answer(404, "ContainerNotFound"), "HEAD"),
    'Cannot HEAD "k"',
  );
  assert.equal(head.message, 'Cannot HEAD "k": ContainerNotFound (HTTP 404)');
});

Deno.test("githubIdToken() asks the runner for a token for Entra's token exchange", async () => {
  const { githubIdToken } = await import("../../../src/store/azure/_identity.ts");
  const asked: string[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    asked.push(`${url.searchParams.get("audience")} ${req.headers.get("authorization")}`);
    if (req.headers.get("authorization") !== "bearer runner-secret") {
      return new Response("no", { status: 403 });
    }
    return Response.json({ value: "jwt.from.github" });
  });
  const base = `http://127.0.0.1:${server.addr.port}/token?api-version=2.0`;
  const env = (token: string) => (name: string) =>
    ({ ACTIONS_ID_TOKEN_REQUEST_URL: base, ACTIONS_ID_TOKEN_REQUEST_TOKEN: token })[name];
  assert.equal(await githubIdToken(env("runner-secret")), "jwt.from.github");
  assert.deepEqual(asked, ["api://AzureADTokenExchange bearer runner-secret"]);
  await assert.rejects(githubIdToken(env("wrong")), /HTTP 403 .*id-token: write/);
});
