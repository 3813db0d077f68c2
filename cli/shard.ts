/**
 * `--shard I/N`: a deterministic partition of `embed`'s inputs, for N processes (a Kubernetes Indexed
 * Job's pods, a Slurm array's tasks) that each embed one part into their own output, merged afterwards.
 *
 * An image belongs to shard `first 8 bytes of SHA-256(normalised path), big-endian, mod N`, where the
 * normalised path is the path as given or found (`/` separators, `.` and `..` folded, no leading `./`),
 * UTF-8. The shard of a file depends on its own path only, so adding files moves none of the others; the
 * same rule in Python: `int.from_bytes(hashlib.sha256(p.encode()).digest()[:8], "big") % n`.
 * @module
 */
import { createHash } from "node:crypto";
import { posix } from "node:path";
import type { ShardSpec } from "./output_rows.ts";

/**
 * Parses `I/N`.
 *
 * @throws {RangeError} Unless 0 <= I < N and N >= 1, both integers.
 */
export function parseShard(text: string): ShardSpec {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new RangeError(`--shard must be I/N with 0 <= I < N, got "${text}"`);
  }
  return { index, count };
}

/** The path as the shard hash sees it. */
export function normalisedPath(path: string): string {
  const p = posix.normalize(path.replaceAll("\\", "/"));
  return p.startsWith("./") ? p.slice(2) : p;
}

/** The shard (0 to count - 1) of `path`. */
export function shardOf(path: string, count: number): number {
  const digest = createHash("sha256").update(normalisedPath(path), "utf8").digest();
  const high = BigInt(digest.readUInt32BE(0));
  const low = BigInt(digest.readUInt32BE(4));
  return Number(((high << 32n) | low) % BigInt(count));
}

/**
 * SHA-256 (hex) of the whole input order: for each image the JSON `[path, metadata]` and "\n". Outputs of
 * runs over the same images (the same paths as given, the same `--list` metadata) carry the same value;
 * `--resume` continues in place only then, and `merge` joins only such outputs.
 */
export function inputsFingerprint(
  items: Iterable<{ readonly path: string; readonly metadata: Readonly<Record<string, string>> }>,
): string {
  const hash = createHash("sha256");
  for (const { path, metadata } of items) hash.update(JSON.stringify([path, metadata]) + "\n", "utf8");
  return hash.digest("hex");
}

/**
 * The items of shard `shard` (all of them without one), each with its position in `items`.
 *
 * @example
 * ```ts
 * selectShard([{ path: "a.png" }, { path: "b.png" }], { index: 0, count: 2 });
 * ```
 */
export function selectShard<T extends { readonly path: string }>(
  items: readonly T[],
  shard?: ShardSpec,
): { item: T; position: number }[] {
  const out: { item: T; position: number }[] = [];
  items.forEach((item, position) => {
    if (!shard || shardOf(item.path, shard.count) === shard.index) out.push({ item, position });
  });
  return out;
}
