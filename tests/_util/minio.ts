/**
 * Starts and drives a MinIO process on loopback. It lives in `scripts/servers/minio.ts`, shared with the benchmarks (dev-only tools that do
 * not borrow from `tests/`); tests import it from here.
 *
 * @module
 */

export * from "../../scripts/servers/minio.ts";
