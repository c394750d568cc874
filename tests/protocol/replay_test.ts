/**
 * Replays the wire transcripts recorded from real Go 1.21-1.26 (tests/testdata/gocacheprog)
 * through serve() on the real local tier, and checks the rules in that folder's README.
 */
import assert from "node:assert/strict";
import { LocalCache } from "../../src/cache/local.ts";
import type { WireRequest } from "../../src/protocol/mod.ts";
import { runSession, sha256Hex } from "../_util/script.ts";

const FIXTURES = new URL("../testdata/gocacheprog/", import.meta.url);
const VERSIONS = ["go1.21", "go1.22", "go1.23", "go1.24", "go1.25", "go1.26"];
const SCENARIOS = ["incremental-build", "list", "test-cached"];

/** A request as go wrote it, with its body line decoded. */
type Request = WireRequest & { body?: Uint8Array };

/** An independent reading of the transcript: header lines, blank lines, body lines. */
function parseTranscript(text: string): Request[] {
  const requests: Request[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith('"')) requests.at(-1)!.body = Uint8Array.fromBase64(JSON.parse(line));
    else requests.push(JSON.parse(line));
  }
  return requests;
}

for (const version of VERSIONS) {
  for (const scenario of SCENARIOS) {
    Deno.test(`replay ${version}/${scenario}: one reply per request, verified puts, close last`, async (t) => {
      const input = await Deno.readFile(new URL(`${version}/${scenario}.stdin`, FIXTURES));
      const requests = parseTranscript(new TextDecoder().decode(input));
      for (const chunkSize of [0, 977]) {
        await t.step(chunkSize ? `in ${chunkSize}-byte chunks` : "in one write", async () => {
          const dir = await Deno.makeTempDir();
          try {
            const cache = await LocalCache.open(dir);
            const { replies, error } = await runSession(input, cache, { chunkSize });
            assert.equal(error, undefined);
            assert.equal(replies[0]!.ID, 0);
            assert.deepEqual(replies[0]!.KnownCommands, ["get", "put", "close"]);
            const byId = new Map(replies.slice(1).map((r) => [r.ID, r]));
            assert.equal(byId.size, replies.length - 1, "no duplicate reply ids");
            assert.deepEqual(
              [...byId.keys()].sort((a, b) => a - b),
              requests.map((r) => r.ID).sort((a, b) => a - b),
            );
            const putActions = new Set<string>();
            for (const request of requests) {
              const reply = byId.get(request.ID)!;
              assert.equal(reply.Err, undefined, `request ${request.ID}`);
              if (request.Command === "put") {
                putActions.add(request.ActionID!);
                const path = String(reply.DiskPath);
                assert.ok(path.startsWith("/") && !/\.[a-z]+$/.test(path.split("/").at(-1)!), path);
                const stored = await Deno.readFile(path);
                assert.equal(stored.length, request.BodySize ?? 0);
                const want = Uint8Array.fromBase64(request.OutputID ?? request.ObjectID!).toHex();
                assert.equal(await sha256Hex(stored), want);
              } else if (request.Command === "get" && putActions.has(request.ActionID!)) {
                assert.equal(
                  reply.Miss,
                  undefined,
                  `get after put of the same action hits (${request.ID})`,
                );
              }
            }
            const close = requests.find((r) => r.Command === "close");
            if (close) assert.equal(replies.at(-1)!.ID, close.ID, "close reply is last");
          } finally {
            await Deno.remove(dir, { recursive: true });
          }
        });
      }
    });
  }
}

Deno.test("replay go1.26/test-cached on a seeded store: hits carry the recorded OutputID, Size and Time", async () => {
  const stdin = await Deno.readTextFile(new URL("go1.26/test-cached.stdin", FIXTURES));
  const stdout = await Deno.readTextFile(new URL("go1.26/test-cached.stdout", FIXTURES));
  const requests = parseTranscript(stdin);
  const recorded = new Map(
    stdout.trim().split("\n").map((l) => JSON.parse(l)).map((r) => [r.ID, r]),
  );
  const dir = await Deno.makeTempDir();
  try {
    const cache = await LocalCache.open(dir);
    let seeded = 0;
    for (const request of requests) {
      const hit = recorded.get(request.ID);
      if (request.Command !== "get" || !hit?.OutputID) continue;
      const outputId = Uint8Array.fromBase64(hit.OutputID).toHex();
      await cache.writeObject(outputId, new Uint8Array(hit.Size ?? 0));
      await cache.writeAction(Uint8Array.fromBase64(request.ActionID!).toHex(), {
        outputId,
        size: hit.Size ?? 0,
        time: new Date(hit.Time),
      });
      seeded++;
    }
    const { replies } = await runSession(stdin, cache);
    let hits = 0;
    for (const reply of replies.slice(1)) {
      const want = recorded.get(reply.ID);
      if (!want?.OutputID) continue;
      assert.equal(reply.OutputID, want.OutputID);
      assert.equal(reply.Size ?? 0, want.Size ?? 0);
      assert.equal(new Date(String(reply.Time)).getTime(), new Date(want.Time).getTime());
      hits++;
    }
    assert.equal(hits, seeded);
    assert.ok(hits > 500);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
