import assert from "node:assert/strict";
import { isReadMethod, rawPathOf } from "../../src/util/http.ts";

Deno.test("rawPathOf() keeps the path as sent, without origin, query or fragment", () => {
  assert.equal(rawPathOf("http://h:1/mod/a/../b?x=1"), "/mod/a/../b");
  assert.equal(rawPathOf("http://h:1/mod/%2e%2e/b#frag"), "/mod/%2e%2e/b");
  assert.equal(rawPathOf("http://h:1"), "/");
  assert.equal(rawPathOf("http://h:1?q"), "/");
});

Deno.test("isReadMethod() accepts GET and HEAD only", () => {
  assert.ok(isReadMethod("GET"));
  assert.ok(isReadMethod("HEAD"));
  for (const method of ["POST", "PUT", "DELETE", "get", "OPTIONS"]) {
    assert.equal(isReadMethod(method), false, method);
  }
});
