/**
 * An HTTPS origin on 127.0.0.1 for the caching proxy's tests: a private CA made with openssl and
 * a server certificate for `origin.localhost`, `mods.localhost`, `localhost` and IP 127.0.0.1
 * (the proxy connects to `.localhost` names on loopback), serving responses of every caching
 * class and counting requests per path.
 *
 * Routes:
 * - `/immutable/<name>`: `public, max-age=31536000, immutable`, body `immutable <name>\n`.
 * - `/revalidate/<name>`: `must-revalidate, max-age=<90 days>`.
 * - `/short/<name>`: `max-age=60` (kept in memory only), body with the request count.
 * - `/private/<name>`: `private, immutable`; `/auth/<name>`: immutable, body echoes the
 *   `Authorization` header; `/auth-public/<name>`: the same with `public`.
 * - `/cookie/<name>`: immutable with `Set-Cookie`; `/vary/<name>`: immutable with `Vary: User-Agent`.
 * - `/big/<bytes>`: immutable, a generated body of that many bytes, streamed.
 * - `/slow/<name>`: immutable, headers after `slowMs`.
 * - `/stall/<name>`: immutable, a few body bytes, then nothing.
 * - `/mod/<path>`: files of `modRoot` (a GOPROXY tree); `.info`, `.mod`, `.zip` immutable.
 *
 * @module
 */

/** Files {@linkcode makeOriginCerts} writes. */
export interface OriginCerts {
  /** The CA certificate (PEM), for `SSL_CERT_FILE`. */
  caFile: string;
  /** The server certificate and key (PEM). */
  cert: string;
  key: string;
}

/**
 * Makes a private CA and a server certificate signed by it with openssl (EC P-256, one day).
 *
 * @param dir An existing directory.
 * @returns The CA's path and the server's certificate and key.
 */
export async function makeOriginCerts(dir: string): Promise<OriginCerts> {
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=DNS:origin.localhost,DNS:mods.localhost,DNS:localhost,IP:127.0.0.1\n" +
      "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
      "extendedKeyUsage=serverAuth\n",
  );
  const steps = [
    ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"],
    [
      "req",
      "-x509",
      "-new",
      "-key",
      "ca.key",
      "-days",
      "1",
      "-subj",
      "/CN=test origin CA",
      "-out",
      "ca.pem",
    ],
    ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key"],
    ["req", "-new", "-key", "server.key", "-subj", "/CN=origin.localhost", "-out", "server.csr"],
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      "server.ext",
      "-out",
      "server.pem",
    ],
    ["pkcs8", "-topk8", "-nocrypt", "-in", "server.key", "-out", "server.pk8"],
  ];
  for (const args of steps) {
    const out = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    if (!out.success) {
      throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
  }
  return {
    caFile: `${dir}/ca.pem`,
    cert: await Deno.readTextFile(`${dir}/server.pem`),
    key: await Deno.readTextFile(`${dir}/server.pk8`),
  };
}

/** A running origin. */
export interface HttpsOrigin extends AsyncDisposable {
  port: number;
  /** Requests per path. */
  counts: Map<string, number>;
  /** Delay of `/slow/` in ms. */
  slowMs: number;
  /** How many requests arrived in all. */
  total(): number;
  close(): Promise<void>;
}

const IMMUTABLE = "public, max-age=31536000, immutable";

/**
 * Starts the origin.
 *
 * @param certs From {@linkcode makeOriginCerts}.
 * @param options `port` (to restart on the same one), `modRoot` for `/mod/`.
 * @returns The running origin.
 */
export function startHttpsOrigin(
  certs: OriginCerts,
  options: { port?: number; modRoot?: string; tls?: boolean } = {},
): HttpsOrigin {
  const counts = new Map<string, number>();
  const state = { slowMs: 300 };
  const tls = options.tls ?? true;
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    ...(tls ? { cert: certs.cert, key: certs.key } : {}),
    onListen() {},
  }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    const count = (counts.get(path) ?? 0) + 1;
    counts.set(path, count);
    const [, kind = "", name = ""] = /^\/([a-z-]+)\/(.*)$/.exec(path) ?? [];
    const plain = (body: string | ReadableStream<Uint8Array>, headers: Record<string, string>) =>
      new Response(body, { headers: { "content-type": "text/plain", ...headers } });
    switch (kind) {
      case "immutable":
        return plain(`immutable ${name}\n`, { "cache-control": IMMUTABLE });
      case "revalidate":
        return plain(`revalidate ${name}\n`, {
          "cache-control": "must-revalidate, max-age=7776000",
        });
      case "short":
        return plain(`short ${name} ${count}\n`, { "cache-control": "max-age=60" });
      case "private":
        return plain(`private ${name} ${count}\n`, { "cache-control": "private, immutable" });
      case "auth":
        return plain(`auth ${request.headers.get("authorization")} ${count}\n`, {
          "cache-control": "max-age=31536000, immutable",
        });
      case "auth-public":
        return plain(`auth-public ${name}\n`, { "cache-control": IMMUTABLE });
      case "cookie":
        return plain(`cookie ${name} ${count}\n`, {
          "cache-control": IMMUTABLE,
          "set-cookie": "s=1",
        });
      case "vary":
        return plain(`vary ${name} ${count}\n`, { "cache-control": IMMUTABLE, vary: "User-Agent" });
      case "big": {
        const size = Number(name);
        return new Response(generated(size), {
          headers: { "cache-control": IMMUTABLE, "content-length": String(size) },
        });
      }
      case "stall": {
        // Headers and a few bytes, then nothing until the client gives up.
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode("partial"));
          },
        });
        return new Response(body, { headers: { "cache-control": IMMUTABLE } });
      }
      case "slow":
        await new Promise((r) => setTimeout(r, state.slowMs));
        return plain(`slow ${name}\n`, { "cache-control": IMMUTABLE });
      case "mod": {
        if (!options.modRoot) break;
        try {
          const bytes = await Deno.readFile(`${options.modRoot}/${decodeURIComponent(name)}`);
          const immutable = /\.(info|mod|zip)$/.test(name);
          return new Response(bytes, {
            headers: { "cache-control": immutable ? IMMUTABLE : "no-cache" },
          });
        } catch {
          return new Response("not found\n", { status: 404 });
        }
      }
    }
    return new Response("not found\n", { status: 404 });
  });
  return {
    port: server.addr.port,
    counts,
    get slowMs() {
      return state.slowMs;
    },
    set slowMs(ms: number) {
      state.slowMs = ms;
    },
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    close: () => server.shutdown(),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/**
 * The body `/big/<size>` serves: byte `i` is `(i * 7 + (i >> 12)) & 255`, made 64 KiB at a time.
 *
 * @param size Bytes.
 * @returns A stream of them.
 */
export function generated(size: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= size) return controller.close();
      const n = Math.min(64 << 10, size - offset);
      const chunk = new Uint8Array(n);
      for (let i = 0; i < n; i++) chunk[i] = ((offset + i) * 7 + ((offset + i) >> 12)) & 255;
      offset += n;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
}
