import assert from "node:assert/strict";
import {
  canonicalVersion,
  checkModuleVersion,
  checkPath,
  checkRawPath,
  escapeString,
  HttpError,
  isPseudoVersion,
  parseRequestPath,
  unescapeString,
} from "../../src/modproxy/paths.ts";

Deno.test("escapeString() and unescapeString() round-trip case-encoded paths", () => {
  assert.equal(escapeString("github.com/Azure/azure-sdk"), "github.com/!azure/azure-sdk");
  assert.equal(unescapeString("github.com/!azure/azure-sdk"), "github.com/Azure/azure-sdk");
  for (const bad of ["Upper", "a!", "a!1", "a!!b", "é"]) {
    assert.equal(unescapeString(bad), undefined, bad);
  }
});

Deno.test("checkPath() follows x/mod CheckPath", () => {
  for (const ok of ["example.com/Hello", "golang.org/x/text", "gopkg.in/yaml.v3", "a.b/c/v2"]) {
    assert.equal(checkPath(ok), undefined, ok);
  }
  for (
    const bad of [
      "",
      "example",
      "-a.com/x",
      "a.com//x",
      "a.com/x/",
      "a.com/../x",
      "a.com/.x",
      "a.com/x.",
      "a.com/x y",
      "a.com/con",
      "a.com/x~1",
      "A.com/x",
      "a.com/x/v1",
      "a.com/x/v0",
      "a.com/x/v2.0",
      "gopkg.in/yaml",
      "a.com/x%2f",
      "a.com\\x",
    ]
  ) {
    assert.notEqual(checkPath(bad), undefined, bad);
  }
});

Deno.test("canonicalVersion() keeps +incompatible and drops other build metadata", () => {
  assert.equal(canonicalVersion("v1"), "v1.0.0");
  assert.equal(canonicalVersion("v1.2.3+meta"), "v1.2.3");
  assert.equal(canonicalVersion("v2.0.0+incompatible"), "v2.0.0+incompatible");
  assert.equal(canonicalVersion("v1.2.3-pre.01"), "");
  assert.equal(canonicalVersion("1.2.3"), "");
  assert.ok(isPseudoVersion("v0.0.0-20240102030405-abcdefabcdef"));
  assert.ok(isPseudoVersion("v1.2.4-0.20240102030405-abcdefabcdef"));
  assert.ok(!isPseudoVersion("v1.2.3"));
  assert.ok(checkModuleVersion("example.com/old", "v2.0.0+incompatible"));
  assert.ok(!checkModuleVersion("example.com/old", "v2.0.0"));
  assert.ok(checkModuleVersion("example.com/x/v2", "v2.1.0"));
  assert.ok(checkModuleVersion("gopkg.in/yaml.v1", "v0.0.0-20240102030405-abcdefabcdef"));
});

Deno.test("parseRequestPath() decodes %21 and bang escapes and classifies versions", () => {
  assert.deepEqual(parseRequestPath("/mod/example.com/%21hello/@v/v1.0.0.zip"), {
    kind: "zip",
    module: "example.com/Hello",
    version: "v1.0.0",
    canonical: true,
  });
  assert.deepEqual(parseRequestPath("/mod/example.com/old/@v/v2.0.0+incompatible.info"), {
    kind: "info",
    module: "example.com/old",
    version: "v2.0.0+incompatible",
    canonical: true,
  });
  assert.deepEqual(parseRequestPath("/mod/example.com/p/@v/%21master.info"), {
    kind: "info",
    module: "example.com/p",
    version: "Master",
    canonical: false,
  });
  assert.deepEqual(parseRequestPath("/mod/example.com/p/@latest"), {
    kind: "latest",
    module: "example.com/p",
  });
  assert.deepEqual(parseRequestPath("/mod/sumdb/sum.golang.org/supported"), {
    kind: "sumdb",
    rest: "sum.golang.org/supported",
  });
  for (
    const bad of [
      "/mod/example.com/Hello/@v/list",
      "/mod/example.com/!/@v/list",
      "/mod/example.com/p/@v/master.zip",
      "/mod/example.com/p/@v/v1.0.zip",
      "/mod/example.com/p/@v/latest.info",
      "/mod/example.com/p/@v/v1.0.0.ziphash",
      "/mod/example.com/p/@v/v2.0.0.mod",
      "/mod/example.com/p",
    ]
  ) {
    assert.throws(
      () => parseRequestPath(bad),
      (e) => e instanceof HttpError && e.status === 404,
      bad,
    );
  }
});

Deno.test("checkRawPath() rejects traversal and smuggling before decoding", () => {
  const base = "http://127.0.0.1:1";
  for (
    const raw of [
      "/mod/a.com/../../etc/passwd",
      "/mod/a.com/%2e%2e/x/@v/list",
      "/mod/a.com/%2E%2E/x/@v/list",
      "/mod//a.com/@v/list",
      "/mod/a.com\\x/@v/list",
      "/mod/a.com/x/@v/list/",
      "/mod/a.com%2fx/@v/list",
      "/mod/a.com/x%00/@v/list",
      "/mod/a.com/./x/@v/list",
      "/mod/a.com/x y/@v/list",
    ]
  ) {
    assert.throws(
      () => checkRawPath(raw, base + raw),
      (e) => e instanceof HttpError && e.status === 400,
      raw,
    );
  }
  checkRawPath(
    "/mod/example.com/%21hello/@v/v1.0.0.info",
    `${base}/mod/example.com/%21hello/@v/v1.0.0.info`,
  );
});
