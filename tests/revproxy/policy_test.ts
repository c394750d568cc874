import assert from "node:assert/strict";
import { decideKeep, parseCacheControl } from "../../src/revproxy/policy.ts";

function keep(
  responseHeaders: Record<string, string>,
  options: { status?: number; method?: string; requestHeaders?: Record<string, string> } = {},
) {
  const request = new Request("https://example.com/x", {
    method: options.method ?? "GET",
    headers: options.requestHeaders,
  });
  return decideKeep(
    request,
    { status: options.status ?? 200, headers: new Headers(responseHeaders) },
    1_000_000,
  );
}

Deno.test("parseCacheControl() reads directives case-insensitively, with max-age", () => {
  const cc = parseCacheControl('Public, MAX-AGE="600", Immutable');
  assert.deepEqual([...cc.directives].sort(), ["immutable", "max-age", "public"]);
  assert.equal(cc.maxAge, 600);
  assert.equal(parseCacheControl("max-age=abc").maxAge, undefined);
  assert.equal(parseCacheControl(null).directives.size, 0);
});

Deno.test("decideKeep() keeps immutable and long must-revalidate answers on disk", () => {
  assert.deepEqual(keep({ "cache-control": "public, max-age=31536000, immutable" }), {
    where: "disk",
  });
  assert.deepEqual(keep({ "cache-control": "must-revalidate, max-age=5184001" }), {
    where: "disk",
  });
  assert.equal(keep({ "cache-control": "must-revalidate, max-age=5184000" }).where, "none");
  assert.equal(keep({ "cache-control": "max-age=31536000" }).where, "none");
});

Deno.test("decideKeep() keeps short max-age answers in memory until they expire", () => {
  assert.deepEqual(keep({ "cache-control": "max-age=60", "content-length": "10" }), {
    where: "memory",
    expiresAt: 1_060_000,
  });
  assert.deepEqual(
    keep({ "cache-control": "max-age=60", age: "50", "content-length": "10" }),
    { where: "memory", expiresAt: 1_010_000 },
  );
  assert.equal(keep({ "cache-control": "max-age=60", age: "60" }).where, "none");
  assert.equal(keep({ "cache-control": "max-age=3600", "content-length": "1" }).where, "none");
  assert.equal(keep({ "cache-control": "max-age=60" }).where, "none", "unknown length");
  assert.equal(
    keep({ "cache-control": "max-age=60", "content-length": String(2 << 20) }).where,
    "none",
  );
});

Deno.test("decideKeep() never keeps private, uncacheable or personal answers", () => {
  const immutable = "max-age=31536000, immutable";
  const cases: [Record<string, string>, Parameters<typeof keep>[1], string][] = [
    [{ "cache-control": `${immutable}, private` }, {}, "private"],
    [{ "cache-control": `${immutable}, no-store` }, {}, "no-store"],
    [{ "cache-control": `${immutable}, no-cache` }, {}, "no-cache"],
    [{ "cache-control": immutable, "set-cookie": "a=b" }, {}, "set-cookie"],
    [{ "cache-control": immutable, vary: "User-Agent" }, {}, "vary"],
    [{ "cache-control": immutable, vary: "*" }, {}, "vary *"],
    [{ "cache-control": immutable }, { requestHeaders: { authorization: "Bearer x" } }, "auth"],
    [{ "cache-control": immutable }, { requestHeaders: { cookie: "s=1" } }, "cookie"],
    [{ "cache-control": immutable }, { requestHeaders: { "cache-control": "no-store" } }, "req"],
    [{ "cache-control": immutable }, { status: 206 }, "206"],
    [{ "cache-control": immutable }, { status: 404 }, "404"],
    [{ "cache-control": immutable }, { method: "HEAD" }, "HEAD"],
    [{ "cache-control": "max-age=60, private", "content-length": "1" }, {}, "private memory"],
  ];
  for (const [headers, options, name] of cases) {
    assert.equal(keep(headers, options).where, "none", name);
  }
});

Deno.test("decideKeep() keeps a public answer to a request with credentials, and Vary on encoding", () => {
  assert.equal(
    keep({ "cache-control": "public, immutable" }, {
      requestHeaders: { authorization: "Bearer x" },
    }).where,
    "disk",
  );
  assert.equal(keep({ "cache-control": "immutable", vary: "Accept-Encoding" }).where, "disk");
});
