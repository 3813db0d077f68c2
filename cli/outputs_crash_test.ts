/**
 * Crash safety of the output writers, every format: a writer is stopped before each of its file
 * operations in turn (and, for writes, in the middle of one: a torn write), as a SIGKILL could stop it;
 * then, as `--resume` does, the commit log is read, the files are cut back to the last commit and the
 * remaining rows are appended. The finished files must equal, byte for byte, those of an uninterrupted
 * run, no row acknowledged before the crash may be lost, and nothing may be left beside them. A second
 * crash during the resumed run is tried too. (Syncs are skipped: a killed process loses no written byte.)
 */
import assert from "node:assert/strict";
import { DenoOutputFs, type FileOp, SimulatedCrash } from "./output_files.ts";
import type { EmbeddingRow, OutputInfo } from "./output_rows.ts";
import { type CommitRecord, completeFinish, type OutputHeader, OutputWriter } from "./output_writer.ts";
import { readCommitLog } from "./commit_log.ts";
import { OUTPUT_FORMATS } from "./output_drivers.ts";
import { withTempDir } from "../tests/_temp.ts";

const D = 3;
const INFO: OutputInfo = {
  model: "procedural:tiny-bit",
  architecture: "test",
  preset: "derm",
  size: 64,
  embeddingSize: D,
  engine: "derm-webgpu test",
  inputs: 14,
  inputsSha256: "00".repeat(32),
};
const ROWS: EmbeddingRow[] = Array.from({ length: 11 }, (_, i): EmbeddingRow => ({
  path: `in/img_${i}.png`,
  hash: (i + 1).toString(16).repeat(64).slice(0, 64),
  metadata: i % 3 === 0 ? {} : { site: `s${i}` } as Record<string, string>,
  position: i + (i > 5 ? 3 : 0),
  embedding: Float32Array.from({ length: D }, (_, j) => Math.sin(i * 3 + j)),
}));
const BATCH = 3;
const ERRORS = '{"path":"in/bad.png","hash":"","position":6,"reason":"Cannot read"}\n';

function header(format: (typeof OUTPUT_FORMATS)[number]): OutputHeader {
  return { format, info: INFO, metadataKeys: ["site"], rowGroupRows: 4 };
}

/** Appends `rows` in batches from `from` on and finishes; returns the rows acknowledged before a crash. */
async function writeFrom(writer: OutputWriter, from: number, acked: { rows: number }): Promise<void> {
  for (let i = from; i < ROWS.length; i += BATCH) {
    await writer.append(ROWS.slice(i, Math.min(i + BATCH, ROWS.length)));
    acked.rows = writer.rows;
  }
  await writer.finish(ERRORS);
}

/** Continues `out` as --resume would, from whatever is on disk. */
async function resumeAndFinish(fs: DenoOutputFs, out: string, format: (typeof OUTPUT_FORMATS)[number]) {
  const log = await readCommitLog<OutputHeader, CommitRecord>(out);
  const acked = { rows: 0 };
  if (log?.last?.done) {
    await completeFinish(fs, out, log.last);
    return ROWS.length;
  }
  if (log?.last) {
    const writer = await OutputWriter.resume(fs, out, log);
    const committed = writer.rows;
    try {
      await writeFrom(writer, committed, acked);
    } finally {
      writer.close();
    }
    return committed;
  }
  if (await Deno.stat(out).then(() => true, () => false)) return ROWS.length; // finished, log removed last
  const writer = await OutputWriter.create(fs, out, header(format));
  try {
    await writeFrom(writer, 0, acked);
  } finally {
    writer.close();
  }
  return 0;
}

/** The files of a finished output in `dir`: name → bytes. */
async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) out.set(e.name, await Deno.readFile(`${dir}/${e.name}`));
  return out;
}

/** A fault hook stopping at operation `at` (a torn write when `torn` and the operation writes). */
function crashAt(
  at: number,
  torn: boolean,
): { hook: (op: FileOp) => number | undefined; count: () => number } {
  let n = 0;
  return {
    hook: (op) => {
      if (n++ !== at) return undefined;
      if (torn && op.size !== undefined && op.size > 1) return Math.floor(op.size / 2);
      throw new SimulatedCrash(op);
    },
    count: () => n,
  };
}

for (const format of OUTPUT_FORMATS) {
  Deno.test(`OutputWriter .${format}: a crash at any operation, resumed, gives the uninterrupted run's bytes`, async () => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/ref`);
      const counting = crashAt(-1, false);
      const fs = new DenoOutputFs({ fault: counting.hook, durable: false });
      const writer = await OutputWriter.create(fs, `${dir}/ref/x.${format}`, header(format));
      await writeFrom(writer, 0, { rows: 0 });
      const reference = await filesOf(`${dir}/ref`);
      const operations = counting.count();
      assert.ok(operations > 20, `only ${operations} operations`);
      assert.ok(reference.has(`x.${format}`) && reference.has(`x.${format}.errors.jsonl`));

      let resumedAfterCommits = 0;
      for (let at = 0; at < operations; at++) {
        for (const torn of [false, true]) {
          const run = `${dir}/run-${at}-${torn}`;
          await Deno.mkdir(run);
          const out = `${run}/x.${format}`;
          const crash = crashAt(at, torn);
          const crashing = new DenoOutputFs({ fault: crash.hook, durable: false });
          const acked = { rows: 0 };
          let crashed = false;
          try {
            const w = await OutputWriter.create(crashing, out, header(format));
            await writeFrom(w, 0, acked);
          } catch (e) {
            if (
              !(e instanceof SimulatedCrash) && !(e instanceof Error && e.cause instanceof SimulatedCrash)
            ) throw e;
            crashed = true;
          } finally {
            crashing.closeAll();
          }
          assert.ok(crashed, `operation ${at} was not reached`);
          const committed = await resumeAndFinish(new DenoOutputFs({ durable: false }), out, format);
          assert.ok(
            committed >= acked.rows,
            `op ${at}: ${acked.rows} rows acknowledged, ${committed} resumed`,
          );
          if (committed > 0) resumedAfterCommits++;
          const got = await filesOf(run);
          assert.deepEqual(
            [...got.keys()].sort(),
            [...reference.keys()].sort(),
            `files after a crash at op ${at}`,
          );
          for (const [name, bytes] of reference) {
            assert.deepEqual(got.get(name), bytes, `${name}, crash at op ${at}`);
          }
          await Deno.remove(run, { recursive: true });
        }
      }
      assert.ok(
        resumedAfterCommits > operations / 2,
        `only ${resumedAfterCommits} crashes left committed rows`,
      );

      // A second crash while resuming, at operations spread over the resumed run.
      for (let first = 5; first < operations; first += 7) {
        for (let second = 0; second < 40; second += 3) {
          const run = `${dir}/twice-${first}-${second}`;
          await Deno.mkdir(run);
          const out = `${run}/x.${format}`;
          const a = new DenoOutputFs({ fault: crashAt(first, second % 2 === 0).hook, durable: false });
          try {
            await writeFrom(await OutputWriter.create(a, out, header(format)), 0, { rows: 0 });
          } catch {
            /* the crash */
          } finally {
            a.closeAll();
          }
          const b = new DenoOutputFs({ fault: crashAt(second, second % 2 === 1).hook, durable: false });
          try {
            await resumeAndFinish(b, out, format);
          } catch {
            /* the second crash, or none when the run was shorter */
          } finally {
            b.closeAll();
          }
          await resumeAndFinish(new DenoOutputFs({ durable: false }), out, format);
          const got = await filesOf(run);
          assert.deepEqual(
            [...got.keys()].sort(),
            [...reference.keys()].sort(),
            `files, crashes at ${first}, ${second}`,
          );
          for (const [name, bytes] of reference) {
            assert.deepEqual(got.get(name), bytes, `${name}: ${first}, ${second}`);
          }
          await Deno.remove(run, { recursive: true });
        }
      }
    });
  });
}
