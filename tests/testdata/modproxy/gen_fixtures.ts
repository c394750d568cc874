/**
 * Generates the module-proxy fixtures next to this file (deterministic; re-run after changes):
 *
 * - `upstream/`: a fake upstream tree in the proxy URL layout (escaped paths), with a test
 *   checksum database `sumdb/sum.test.local/` (supported, lookups, one tile, latest) signed with a
 *   fixed Ed25519 key (the same bytes come out on every run);
 * - `sumdb.vkey`: the verifier key for `GOSUMDB`;
 * - `consumer/`: a module requiring `example.com/Hello v1.0.0`, with its go.sum;
 * - `tampered/example.com/!hello/@v/v1.0.0.zip`: same names, different content.
 *
 * Run: `scripts/deno run --allow-read --allow-write tests/testdata/modproxy/gen_fixtures.ts`
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeZip } from "../../_util/fake_upstream.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const NAME = "sum.test.local";
const enc = new TextEncoder();

function sha256(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

function b64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function escape(s: string): string {
  return s.replace(/[A-Z]/g, (c) => "!" + c.toLowerCase());
}

function h1(files: Record<string, string>): string {
  const lines = Object.keys(files).sort().map((name) =>
    `${createHash("sha256").update(files[name]!).digest("hex")}  ${name}\n`
  );
  return "h1:" + createHash("sha256").update(lines.join("")).digest("base64");
}

async function write(rel: string, data: string | Uint8Array): Promise<void> {
  const path = join(HERE, rel);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, typeof data === "string" ? enc.encode(data) : data);
}

interface Version {
  module: string;
  version: string;
  time: string;
  mod: string;
  files: Record<string, string>; // relative to module@version/
}

const PSEUDO = "v0.0.0-20240102030405-abcdefabcdef";
const versions: Version[] = [
  {
    module: "example.com/Hello",
    version: "v1.0.0",
    time: "2024-01-02T03:04:05Z",
    mod: "module example.com/Hello\n\ngo 1.20\n",
    files: {
      "go.mod": "module example.com/Hello\n\ngo 1.20\n",
      "hello.go": 'package hello\n\n// Hello greets.\nfunc Hello() string { return "hello, world" }\n',
    },
  },
  {
    module: "example.com/Hello",
    version: "v1.1.0",
    time: "2024-02-02T03:04:05Z",
    mod: "module example.com/Hello\n\ngo 1.20\n",
    files: {
      "go.mod": "module example.com/Hello\n\ngo 1.20\n",
      "hello.go": 'package hello\n\n// Hello greets.\nfunc Hello() string { return "hello, v1.1" }\n',
    },
  },
  {
    module: "example.com/old",
    version: "v2.0.0+incompatible",
    time: "2023-05-06T07:08:09Z",
    mod: "module example.com/old\n",
    files: { "old.go": "package old\n\n// Old is old.\nconst Old = 2\n" },
  },
  {
    module: "example.com/pseudo",
    version: PSEUDO,
    time: "2024-01-02T03:04:05Z",
    mod: "module example.com/pseudo\n\ngo 1.20\n",
    files: {
      "go.mod": "module example.com/pseudo\n\ngo 1.20\n",
      "pseudo.go": "package pseudo\n\n// P is a value.\nconst P = 1\n",
    },
  },
];

function zipOf(v: Version, files = v.files): Uint8Array {
  const prefix = `${v.module}@${v.version}/`;
  return makeZip(Object.fromEntries(Object.entries(files).map(([n, c]) => [prefix + n, c])));
}

function zipHash(v: Version): string {
  const prefix = `${v.module}@${v.version}/`;
  return h1(Object.fromEntries(Object.entries(v.files).map(([n, c]) => [prefix + n, c])));
}

function goSumLines(v: Version): string {
  return `${v.module} ${v.version} ${zipHash(v)}\n` +
    `${v.module} ${v.version}/go.mod ${h1({ "go.mod": v.mod })}\n`;
}

// ---- module files ----
await Deno.remove(join(HERE, "upstream"), { recursive: true }).catch(() => {});
for (const v of versions) {
  const base = `upstream/${escape(v.module)}/@v/${escape(v.version)}`;
  await write(`${base}.info`, JSON.stringify({ Version: v.version, Time: v.time }) + "\n");
  await write(`${base}.mod`, v.mod);
  await write(`${base}.zip`, zipOf(v));
}
await write("upstream/example.com/!hello/@v/list", "v1.0.0\nv1.1.0\n");
await write("upstream/example.com/old/@v/list", "v2.0.0+incompatible\n");
await write("upstream/example.com/pseudo/@v/list", "");
const pseudoInfo = JSON.stringify({ Version: PSEUDO, Time: "2024-01-02T03:04:05Z" }) + "\n";
await write("upstream/example.com/pseudo/@v/master.info", pseudoInfo);
await write("upstream/example.com/pseudo/@latest", pseudoInfo);
await write("upstream/example.com/nolatest/@v/list", "");

// ---- tampered zip: same names, different bytes ----
const hello = versions[0]!;
await write(
  "tampered/example.com/!hello/@v/v1.0.0.zip",
  zipOf(hello, { ...hello.files, "hello.go": hello.files["hello.go"]!.replace("world", "pwned") }),
);

// ---- test checksum database ----
const seed = sha256("go-cache-plugin test sumdb key");
const pkcs8 = new Uint8Array([
  ...[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20],
  ...seed,
]);
const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, [
  "sign",
]);
const jwk = await crypto.subtle.exportKey("jwk", privateKey);
const pub = Uint8Array.from(
  atob(jwk.x!.replace(/-/g, "+").replace(/_/g, "/") + "="),
  (c) => c.charCodeAt(0),
);
const keyBytes = new Uint8Array([1, ...pub]);
const keyHash = sha256(new Uint8Array([...enc.encode(`${NAME}\n`), ...keyBytes])).subarray(0, 4);
const hex = [...keyHash].map((b) => b.toString(16).padStart(2, "0")).join("");
const vkey = `${NAME}+${hex}+${b64(keyBytes)}`;
await write("sumdb.vkey", vkey + "\n");

const records = versions.map(goSumLines);
const leaves = records.map((r) => sha256(new Uint8Array([0, ...enc.encode(r)])));
const node = (l: Uint8Array, r: Uint8Array) => sha256(new Uint8Array([1, ...l, ...r]));
function root(hashes: Uint8Array[]): Uint8Array {
  if (hashes.length === 1) return hashes[0]!;
  let k = 1;
  while (k * 2 < hashes.length) k *= 2;
  return node(root(hashes.slice(0, k)), root(hashes.slice(k)));
}
const n = leaves.length;
const text = `go.sum database tree\n${n}\n${b64(root(leaves))}\n`;
const sig = new Uint8Array(
  await crypto.subtle.sign({ name: "Ed25519" }, privateKey, enc.encode(text)),
);
const note = `${text}\n\u2014 ${NAME} ${b64(new Uint8Array([...keyHash, ...sig]))}\n`;
const db = `upstream/sumdb/${NAME}`;
await write(`${db}/supported`, "");
await write(`${db}/latest`, note);
for (const [id, v] of versions.entries()) {
  await write(
    `${db}/lookup/${escape(v.module)}@${escape(v.version)}`,
    `${id}\n${records[id]}\n${note}`,
  );
}
const tile = new Uint8Array(32 * n);
leaves.forEach((leaf, i) => tile.set(leaf, 32 * i));
await write(`${db}/tile/8/0/000.p/${n}`, tile);

// ---- a module that needs example.com/Hello ----
await write(
  "consumer/go.mod",
  "module example.com/consumer\n\ngo 1.21\n\nrequire example.com/Hello v1.0.0\n",
);
await write("consumer/go.sum", goSumLines(hello));
await write(
  "consumer/main.go",
  'package main\n\nimport hello "example.com/Hello"\n\nfunc main() { println(hello.Hello()) }\n',
);
