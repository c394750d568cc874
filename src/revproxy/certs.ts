/**
 * The proxy's certificates: a signing CA kept in the proxy's directory (`ca.pem`, the only file at
 * its top level, so `SSL_CERT_DIR` may name the directory; its key `private/ca-key.pem`, in a
 * directory and a file only the owner may read) and, at every start, a server certificate signed by it whose
 * subject alternative names are the listed hosts (the host part of a listed `host:port`). Made
 * with `@peculiar/x509` on WebCrypto (ECDSA P-256, SHA-256).
 *
 * The CA is reused across restarts, so a client that trusts `ca.pem` keeps trusting it; it is
 * made anew when either file is missing or unreadable, when the two do not belong together, or
 * when it expires within 30 days. Its key never leaves the machine: it is never uploaded, logged
 * or served.
 *
 * @module
 */

// @peculiar/x509 resolves its parts with tsyringe, which needs the Reflect metadata polyfill first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { join } from "node:path";
import { atomicWrite, FILE_MODE } from "../util/files.ts";

/** How long a new CA is valid. */
const CA_VALID_MS = 365 * 86_400_000;
/** A CA expiring sooner than this is replaced at start. */
const CA_RENEW_MS = 30 * 86_400_000;
/** Clock skew allowed for: certificates start to be valid this long before they are made. */
const SKEW_MS = 3_600_000;

const ALGORITHM: EcKeyGenParams & EcdsaParams = {
  name: "ECDSA",
  namedCurve: "P-256",
  hash: "SHA-256",
};

/** The CA and the server certificate a proxy serves TLS with. */
export interface ProxyCertificates {
  /** The CA certificate, PEM: what clients trust. */
  caPem: string;
  /** Where `caPem` was written. */
  caPath: string;
  /** Whether the CA was made at this start (not found, unusable or expiring). */
  caCreated: boolean;
  /** The server certificate (PEM) followed by the CA's. */
  certChainPem: string;
  /** The server certificate's private key, PKCS #8 PEM. */
  keyPem: string;
}

/**
 * Loads the CA from `dir` (or makes one there) and signs a server certificate for `hosts`.
 *
 * @param dir The proxy's directory, created if needed: `ca.pem` (mode 0644) and
 * `private/ca-key.pem` (mode 0600, directory 0700) live there.
 * @param hosts Host names or IP addresses (no ports), at least one.
 * @returns The certificates.
 * @throws {Error} When the directory cannot be written.
 */
export async function loadCertificates(
  dir: string,
  hosts: readonly string[],
): Promise<ProxyCertificates> {
  if (hosts.length === 0) throw new RangeError("Cannot make a server certificate: no hosts");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.mkdir(join(dir, "private"), { mode: 0o700 }).catch((error) => {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  });
  await Deno.chmod(join(dir, "private"), 0o700).catch(() => {}); // not on Windows
  const caPath = join(dir, "ca.pem");
  const keyPath = join(dir, "private", "ca-key.pem");
  let ca = await readCa(caPath, keyPath);
  const caCreated = ca === undefined;
  if (!ca) {
    ca = await makeCa();
    await writePrivate(keyPath, await exportKey(ca.keys.privateKey));
    await writePublic(caPath, ca.cert.toString("pem") + "\n");
  }
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const now = Date.now();
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${hosts[0]!.replace(/[,+="\\<>;#]/g, "")}, O=go-cache-plugin revproxy`,
    issuer: ca.cert.subject,
    notBefore: new Date(now - SKEW_MS),
    notAfter: ca.cert.notAfter,
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        hosts.map((host) => ({
          type: isIp(host) ? "ip" as const : "dns" as const,
          value: unbracket(host),
        })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  const caPem = ca.cert.toString("pem") + "\n";
  return {
    caPem,
    caPath,
    caCreated,
    certChainPem: server.toString("pem") + "\n" + caPem,
    keyPem: await exportKey(keys.privateKey),
  };
}

interface Ca {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

async function makeCa(): Promise<Ca> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=go-cache-plugin revproxy CA ${new Date(now).toISOString().slice(0, 10)}, ` +
      `O=go-cache-plugin revproxy`,
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(now + CA_VALID_MS),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}

/** The stored CA, or `undefined` when it is missing, unusable or expiring soon. */
async function readCa(caPath: string, keyPath: string): Promise<Ca | undefined> {
  try {
    const [certPem, keyPem] = await Promise.all([
      Deno.readTextFile(caPath),
      Deno.readTextFile(keyPath),
    ]);
    const cert = new x509.X509Certificate(certPem);
    if (cert.notAfter.getTime() - Date.now() < CA_RENEW_MS) return undefined;
    const privateKey = await crypto.subtle.importKey(
      "pkcs8",
      x509.PemConverter.decodeFirst(keyPem),
      ALGORITHM,
      true,
      ["sign"],
    );
    const publicKey = await cert.publicKey.export(ALGORITHM, ["verify"]);
    // The pair must belong together: sign and verify a probe.
    const probe = new Uint8Array(32);
    crypto.getRandomValues(probe);
    const signature = await crypto.subtle.sign(ALGORITHM, privateKey, probe);
    if (!await crypto.subtle.verify(ALGORITHM, publicKey, signature, probe)) return undefined;
    if (!await cert.verify({ publicKey, signatureOnly: true })) return undefined;
    return { cert, keys: { privateKey, publicKey } };
  } catch {
    return undefined;
  }
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY") + "\n";
}

/** Writes a file only its owner may read, replacing any old one atomically. */
async function writePrivate(path: string, text: string): Promise<void> {
  await atomicWrite(path, new TextEncoder().encode(text), { mode: FILE_MODE });
  await Deno.chmod(path, FILE_MODE).catch(() => {}); // the mode is subject to the umask; not on Windows
}

/** Writes a file anyone may read (the CA certificate), replacing any old one atomically. */
async function writePublic(path: string, text: string): Promise<void> {
  await atomicWrite(path, new TextEncoder().encode(text), { mode: 0o644 });
}

/** A positive random serial number (16 bytes, hex, top bit clear). */
function randomSerial(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unbracket(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** Whether a host is an IPv4 or IPv6 address literal. */
export function isIp(host: string): boolean {
  const bare = unbracket(host);
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(bare) || bare.includes(":");
}
