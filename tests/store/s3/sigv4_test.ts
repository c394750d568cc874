/**
 * The SigV4 signer against the worked example in the Amazon S3 API Reference ("Signature
 * Calculations for the Authorization Header: Transferring Payload in a Single Chunk", Example: GET
 * Object), and the key encoding rules. MinIO checks real signatures in tests/e2e/s3_test.ts.
 */

import assert from "node:assert/strict";
import * as hashes from "node:crypto";
import { encodeKeyPath, SigV4Signer, UNSIGNED_PAYLOAD } from "../../../src/store/s3/_sigv4.ts";

const EXAMPLE = {
  accessKeyId: "AKIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

Deno.test("SigV4: the S3 documentation's GET Object example", () => {
  const signer = new SigV4Signer(hashes, "us-east-1", "s3");
  const headers = signer.sign({
    method: "GET",
    host: "examplebucket.s3.amazonaws.com",
    path: "/test.txt",
    headers: { range: "bytes=0-9" },
    payloadHash: EMPTY_SHA256,
    date: new Date("2013-05-24T00:00:00Z"),
  }, EXAMPLE);
  assert.equal(
    headers["authorization"],
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
      "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," +
      "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
  );
  assert.equal(headers["x-amz-date"], "20130524T000000Z");
  assert.equal(headers["x-amz-content-sha256"], EMPTY_SHA256);
  assert.equal(headers["range"], "bytes=0-9");
  assert.equal(headers["x-amz-security-token"], undefined);
  // The signing key is cached per day: a second signature of the same request is identical.
  const again = signer.sign({
    method: "GET",
    host: "examplebucket.s3.amazonaws.com",
    path: "/test.txt",
    headers: { range: "bytes=0-9" },
    payloadHash: EMPTY_SHA256,
    date: new Date("2013-05-24T00:00:00Z"),
  }, EXAMPLE);
  assert.equal(again["authorization"], headers["authorization"]);
});

Deno.test("SigV4: unsigned payload, session token, other day and secret", () => {
  const signer = new SigV4Signer(hashes, "eu-west-1");
  const input = {
    method: "HEAD",
    host: "127.0.0.1:9000",
    path: "/bucket/key",
    date: new Date("2026-11-24T21:00:00.999Z"),
  };
  const plain = signer.sign(input, EXAMPLE);
  assert.equal(plain["x-amz-content-sha256"], UNSIGNED_PAYLOAD);
  assert.equal(plain["x-amz-date"], "20261124T210000Z");
  assert.match(
    plain["authorization"]!,
    /^AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE\/20261124\/eu-west-1\/s3\/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=[0-9a-f]{64}$/,
  );
  const token = signer.sign(input, { ...EXAMPLE, sessionToken: "tok" });
  assert.equal(token["x-amz-security-token"], "tok");
  assert.match(
    token["authorization"]!,
    /SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,/,
  );
  const otherSecret = signer.sign(input, { ...EXAMPLE, secretAccessKey: "other" });
  assert.notEqual(otherSecret["authorization"], plain["authorization"]);
  const nextDay = signer.sign({ ...input, date: new Date("2026-11-25T00:00:01Z") }, EXAMPLE);
  assert.match(nextDay["authorization"]!, /\/20261125\/eu-west-1\//);
  assert.equal(signer.sign(input, EXAMPLE)["authorization"], plain["authorization"]);
});

Deno.test("SigV4: key paths are encoded byte by byte, slashes kept", () => {
  assert.equal(encodeKeyPath("ci/action/0a/0aff"), "ci/action/0a/0aff");
  assert.equal(encodeKeyPath("a b/c+d=e&f"), "a%20b/c%2Bd%3De%26f");
  assert.equal(encodeKeyPath("x!'()*~._-"), "x%21%27%28%29%2A~._-");
  assert.equal(encodeKeyPath("é/ü"), "%C3%A9/%C3%BC");
  assert.equal(encodeKeyPath("a//b"), "a//b");
});
