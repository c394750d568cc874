import "reflect-metadata";
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { loadCertificates } from "../../src/revproxy/certs.ts";
import { hostOf } from "../../src/revproxy/mod.ts";

Deno.test("loadCertificates() makes a CA once, keeps its key private, and signs for the hosts", async () => {
  const dir = await Deno.makeTempDir();
  const first = await loadCertificates(`${dir}/revproxy`, ["a.example", "127.0.0.1"]);
  assert.equal(first.caCreated, true);
  assert.equal(first.caPath, `${dir}/revproxy/ca.pem`);
  assert.equal((await Deno.stat(`${dir}/revproxy/private/ca-key.pem`)).mode! & 0o777, 0o600);
  assert.equal((await Deno.stat(`${dir}/revproxy/private`)).mode! & 0o777, 0o700);
  assert.equal(await Deno.readTextFile(first.caPath), first.caPem);
  assert.doesNotMatch(first.caPem, /PRIVATE KEY/);

  const [serverPem] = first.certChainPem.split(/(?<=-----END CERTIFICATE-----\n)/);
  const server = new x509.X509Certificate(serverPem!);
  const ca = new x509.X509Certificate(first.caPem);
  assert.ok(await server.verify({ publicKey: ca.publicKey, signatureOnly: true }));
  const san = server.getExtension(x509.SubjectAlternativeNameExtension)!;
  assert.deepEqual(san.names.toJSON(), [
    { type: "dns", value: "a.example" },
    { type: "ip", value: "127.0.0.1" },
  ]);
  assert.equal(ca.getExtension(x509.BasicConstraintsExtension)?.ca, true);

  // A restart reuses the CA; a broken key file makes a new one.
  const second = await loadCertificates(`${dir}/revproxy`, ["b.example"]);
  assert.equal(second.caCreated, false);
  assert.equal(second.caPem, first.caPem);
  await Deno.writeTextFile(`${dir}/revproxy/private/ca-key.pem`, "garbage");
  const third = await loadCertificates(`${dir}/revproxy`, ["b.example"]);
  assert.equal(third.caCreated, true);
  assert.notEqual(third.caPem, first.caPem);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("hostOf() drops the port of a listed host:port", () => {
  assert.equal(hostOf("a.example:8443"), "a.example");
  assert.equal(hostOf("a.example"), "a.example");
  assert.equal(hostOf("[::1]:8443"), "[::1]");
});
