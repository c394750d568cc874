/**
 * What `--read-prefixes` costs per lookup, against MinIO on loopback: the S3 tier's own code
 * (`TieredCache` over a `ReadThroughStore` of `AwsObjectStore`s, as `src/cli/remote_stack.ts` wires
 * it) in this process, one get at a time, each for a new action id on an empty local tier. It
 * counts the S3 requests each get makes (from the `--debug=4` trace hook) and times the get, for
 *
 * - a hit under the own prefix (`pr/1`),
 * - a miss there and a hit under the first read prefix (`main`), or the second (`release`),
 * - a miss everywhere,
 *
 * with 0, 1 and 2 read prefixes. Cells are interleaved round by round; objects are `--size`
 * bytes (default 1 KiB: the cost is round trips, not bytes).
 *
 * Usage: scripts/deno run --frozen --allow-read --allow-write --allow-env --allow-net=127.0.0.1
 *        --allow-sys=osRelease --allow-run scripts/bench/read_prefixes.ts [--n=300]
 *        [--rounds=5] [--size=1024] [--json]
 *
 * @module
 */

import { LocalCache } from "../../src/cache/local.ts";
import { actionKey, outputKey, TieredCache } from "../../src/cache/remote/mod.ts";
import { AwsObjectStore, ReadThroughStore } from "../../src/store/mod.ts";
import { findMinio, startMinio } from "../servers/minio.ts";
import {
  BENCH_DIR,
  DENO_RUN,
  environment,
  freshDir,
  median,
  ms,
  parseFlags,
  percentile,
  print,
  progress,
  saveResults,
  table,
} from "./_lib.ts";

const OWN = "pr/1";
const READS = ["main", "release"];

/** Where a cell's entries live: a prefix, or nowhere (a miss). */
type Where = "own" | "main" | "release" | "nowhere";

interface Cell {
  /** How many read prefixes the plugin has. */
  reads: number;
  where: Where;
  label: string;
}

const CELLS: Cell[] = [
  { reads: 0, where: "own", label: "hit under the own prefix" },
  { reads: 0, where: "nowhere", label: "miss" },
  { reads: 1, where: "own", label: "hit under the own prefix" },
  { reads: 1, where: "main", label: "miss under own, hit under read prefix 1" },
  { reads: 1, where: "nowhere", label: "miss everywhere" },
  { reads: 2, where: "own", label: "hit under the own prefix" },
  { reads: 2, where: "main", label: "miss under own, hit under read prefix 1" },
  { reads: 2, where: "release", label: "miss under own and 1, hit under read prefix 2" },
  { reads: 2, where: "nowhere", label: "miss everywhere" },
];

/** A hex id from a counter, distinct per cell and get. */
function idOf(cell: number, n: number): string {
  const hex = `${cell.toString(16).padStart(2, "0")}${n.toString(16).padStart(8, "0")}`;
  return hex.repeat(7).slice(0, 64);
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>))
    .toHex();
}

async function main(): Promise<void> {
  const flags = parseFlags(Deno.args);
  const n = Number(flags.get("n") ?? 300);
  const rounds = Number(flags.get("rounds") ?? 5);
  const size = Number(flags.get("size") ?? 1024);
  const perRound = Math.ceil(n / rounds);
  if (!(await findMinio())) throw new Error("Cannot run: MinIO is not installed");
  const env = await environment();
  await using minio = await startMinio();
  for (const [name, value] of Object.entries(minio.env())) Deno.env.set(name, value);
  Deno.env.delete("AWS_PROFILE");
  let requests = 0;
  const root = new AwsObjectStore({
    bucket: minio.bucket,
    endpoint: minio.endpoint,
    pathStyle: true,
    region: "us-east-1",
    trace: (line) => {
      if (line.startsWith("B S3 ")) requests++;
    },
  });
  const stores = {
    own: root.withPrefix(OWN),
    main: root.withPrefix(READS[0]!),
    release: root.withPrefix(READS[1]!),
  };

  progress(`seeding ${CELLS.length} x ${perRound * rounds} entries of ${size} bytes`);
  for (const [index, cell] of CELLS.entries()) {
    if (cell.where === "nowhere") continue;
    const store = stores[cell.where];
    const puts: Promise<void>[] = [];
    for (let k = 0; k < perRound * rounds; k++) {
      const body = crypto.getRandomValues(new Uint8Array(size));
      const outputId = await sha256Hex(body);
      const record = new TextEncoder().encode(`${outputId} ${BigInt(Date.now()) * 1_000_000n}`);
      puts.push(
        store.put(outputKey(outputId), body, { size }).then(() =>
          store.put(actionKey(idOf(index, k)), record, { size: record.length })
        ),
      );
      if (puts.length >= 16) await Promise.all(puts.splice(0));
    }
    await Promise.all(puts);
  }

  const samples = CELLS.map(() => ({ ms: [] as number[], requests: 0, hits: 0, gets: 0 }));
  const dirs: string[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      progress(`round ${round + 1}/${rounds}`);
      for (const [index, cell] of CELLS.entries()) {
        const dir = await freshDir(`read-prefixes-${index}-${round}`);
        dirs.push(dir);
        const view = new ReadThroughStore(stores.own, {
          readStores: READS.slice(0, cell.reads).map((p) => root.withPrefix(p)),
        });
        const cache = new TieredCache(await LocalCache.open(dir), view);
        // One warm-up get per cache (a miss), not counted: the connection is already warm.
        await cache.get(idOf(0xff, round * 100 + index));
        const sample = samples[index]!;
        for (let k = round * perRound; k < (round + 1) * perRound; k++) {
          const before = requests;
          const started = performance.now();
          const hit = await cache.get(idOf(index, k));
          sample.ms.push(performance.now() - started);
          sample.requests += requests - before;
          sample.gets++;
          if (hit) sample.hits++;
        }
        await cache.close();
      }
    }
  } finally {
    for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  // The same outcome without read prefixes: a hit under the own prefix, or a plain miss.
  const reference = (cell: Cell) =>
    samples[
      CELLS.findIndex((c) =>
        c.reads === 0 && (c.where === "nowhere") === (cell.where === "nowhere")
      )
    ]!;
  const rows = CELLS.map((cell, index) => {
    const s = samples[index]!;
    const ref = reference(cell);
    const perGet = s.requests / s.gets;
    const delta = median(s.ms) - median(ref.ms);
    return [
      String(cell.reads),
      cell.label,
      `${s.hits}/${s.gets}`,
      perGet.toFixed(2),
      `+${(perGet - ref.requests / ref.gets).toFixed(2)}`,
      ms(median(s.ms)),
      ms(percentile(s.ms, 90)),
      `${delta >= 0 ? "+" : "−"}${ms(Math.abs(delta))}`,
    ];
  });
  const markdown = table(
    [
      "read prefixes",
      "lookup",
      "hits",
      "S3 requests per get",
      "extra requests",
      "median",
      "p90",
      "median vs no read prefixes",
    ],
    rows,
  );
  const data = {
    env,
    n: perRound * rounds,
    rounds,
    size,
    cells: CELLS.map((cell, index) => ({ ...cell, ...samples[index] })),
  };
  const saved = await saveResults("read_prefixes", data);
  if (flags.has("json")) print(JSON.stringify(data, null, 2));
  print(
    `### Read prefixes: cost per lookup (n=${perRound * rounds} gets per row, ${rounds} ` +
      `interleaved rounds, ${size}-byte objects, MinIO on loopback)\n`,
  );
  print(markdown);
  print(
    `\nOwn prefix \`${OWN}\`, read prefixes \`${READS.join("`, `")}\` (in that order); each get ` +
      `is a new action on an empty local tier. "Extra" compares with the same outcome and no ` +
      `read prefixes (a hit under the own prefix: 2 requests, record and object; a miss: 1). ` +
      `Each prefix asked before the one that answers, or in vain, adds one GET of a record.`,
  );
  print(`\nload average before: ${env.load}; results: ${saved}`);
  print(
    `reproduce: GCP_BENCH_DIR=${BENCH_DIR} ${DENO_RUN} scripts/bench/read_prefixes.ts ` +
      `--n=${perRound * rounds} --rounds=${rounds} --size=${size}`,
  );
}

if (import.meta.main) await main();
