/**
 * `EmbedOutput`, the resume logic of `embed`, driven as embed's loop drives it but with a stand-in model
 * (an image's embedding is a function of its bytes' hash): a killed run resumed in place, a finished file
 * whose inputs changed (one image edited, one added, one gone), a committed image edited before resuming
 * and an image that failed and now decodes (both force the switch from in place to a rebuilt file), and
 * a run of another model refused. Every result must equal, byte for byte, a fresh run over the same inputs.
 */
import assert from "node:assert/strict";
import { EmbedOutput, type RunInput } from "./embed_output.ts";
import { DenoOutputFs, type FileOp, SimulatedCrash } from "./output_files.ts";
import type { CommitRecord, OutputHeader } from "./output_writer.ts";
import { readCommitLog } from "./commit_log.ts";
import { withTempDir } from "../tests/_temp.ts";

const D = 4;

/** The stand-in world: each path's current content hash, or undefined when it cannot be decoded. */
type Files = Map<string, string | undefined>;

function header(inputs: readonly RunInput[], format: OutputHeader["format"], model = "m"): OutputHeader {
  return {
    format,
    info: {
      model,
      architecture: "a",
      preset: "derm",
      size: 64,
      embeddingSize: D,
      engine: "e",
      inputs: inputs.length,
      inputsSha256: inputs.map((i) => i.path).join(","),
    },
    metadataKeys: ["k"],
    rowGroupRows: 3,
  };
}

function embeddingOf(hash: string): Float32Array {
  return Float32Array.from({ length: D }, (_, j) => hash.charCodeAt(j % hash.length) / (j + 1));
}

/** embed's loop: keep, fail or embed each input, two per batch; `crash` stops it after that many keeps/batches. */
async function runEmbed(
  dir: string,
  files: Files,
  paths: string[],
  format: OutputHeader["format"],
  resume: boolean,
  fault?: (op: FileOp) => number | undefined,
): Promise<string> {
  const inputs: RunInput[] = paths.map((path, position) => ({
    path,
    metadata: { k: path.slice(0, 2) },
    position,
  }));
  const fs = new DenoOutputFs({ fault, durable: false });
  const out = await EmbedOutput.open({
    out: `${dir}/o.${format}`,
    header: header(inputs, format),
    inputs,
    resume,
    fs,
  });
  try {
    let batch: { index: number; hash: string; embedding: Float32Array }[] = [];
    for (let i = 0; i < inputs.length; i++) {
      const hash = files.get(inputs[i].path);
      if (hash === undefined) await out.fail(i, "", "cannot decode");
      else if (out.knownHash(i) === hash) await out.keep(i);
      else batch.push({ index: i, hash, embedding: embeddingOf(hash) });
      if (batch.length === 2 || i === inputs.length - 1) {
        await out.add(batch);
        batch = [];
      }
    }
    await out.finish();
  } finally {
    out.close();
    fs.closeAll();
  }
  return out.mode;
}

async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const m = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) m.set(e.name, await Deno.readFile(`${dir}/${e.name}`));
  return m;
}

async function assertSameAsFresh(dir: string, files: Files, paths: string[], format: OutputHeader["format"]) {
  await Deno.mkdir(`${dir}/fresh`);
  await runEmbed(`${dir}/fresh`, files, paths, format, false);
  const want = await filesOf(`${dir}/fresh`);
  await Deno.remove(`${dir}/fresh`, { recursive: true });
  const got = await filesOf(dir);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, bytes] of want) assert.deepEqual(got.get(name), bytes, name);
}

function world(n: number): { files: Files; paths: string[] } {
  const paths = Array.from({ length: n }, (_, i) => `p${i}.png`);
  const files: Files = new Map(paths.map((p, i) => [p, i === 4 ? undefined : `h${i}`.padEnd(8, "x")]));
  return { files, paths };
}

/** A fault hook that stops the run at the `at`-th append to a data file. */
function killAfterAppends(at: number) {
  let n = 0;
  return (op: FileOp) => {
    if (op.kind === "append" && !op.path.endsWith(".commits") && n++ === at) throw new SimulatedCrash(op);
    return undefined;
  };
}

for (const format of ["parquet", "npy"] as const) {
  Deno.test(`EmbedOutput .${format}: a killed run resumes in place to the fresh run's file`, async () => {
    await withTempDir(async (dir) => {
      const { files, paths } = world(11);
      await assert.rejects(runEmbed(dir, files, paths, format, false, killAfterAppends(7)), SimulatedCrash);
      assert.equal(await runEmbed(dir, files, paths, format, true), "in place");
      await assertSameAsFresh(dir, files, paths, format);
    });
  });

  Deno.test(`EmbedOutput .${format}: a finished file with changed inputs is rebuilt from its rows`, async () => {
    await withTempDir(async (dir) => {
      const { files, paths } = world(9);
      await runEmbed(dir, files, paths, format, false);
      files.set("p2.png", "edited!!");
      files.set("new.png", "newfile!");
      const changed = [...paths.filter((p) => p !== "p6.png"), "new.png"];
      assert.equal(await runEmbed(dir, files, changed, format, true), "rebuilt");
      await assertSameAsFresh(dir, files, changed, format);
    });
  });

  Deno.test(`EmbedOutput .${format}: an edited committed image or a fixed failed one switches to a rebuild`, async () => {
    for (const change of ["edit", "fix"] as const) {
      await withTempDir(async (dir) => {
        const { files, paths } = world(12);
        // Killed once rows past p4 (which fails) are committed.
        const at = format === "npy" ? 14 : 9;
        await assert.rejects(
          runEmbed(dir, files, paths, format, false, killAfterAppends(at)),
          SimulatedCrash,
        );
        const log = await readCommitLog<OutputHeader, CommitRecord>(`${dir}/o.${format}`);
        assert.ok(log!.last!.n >= 5 && log!.last!.n < 11, `${log!.last!.n} rows committed`);
        if (change === "edit") files.set("p1.png", "edited!!");
        else files.set("p4.png", "fixed!!!"); // failed before: now a row goes before committed ones
        assert.equal(await runEmbed(dir, files, paths, format, true), "rebuilt", change);
        await assertSameAsFresh(dir, files, paths, format);
      });
    }
  });
}

Deno.test("EmbedOutput.open() refuses to resume a file of another model", async () => {
  await withTempDir(async (dir) => {
    const { files, paths } = world(3);
    await runEmbed(dir, files, paths, "npy", false);
    const inputs = paths.map((path, position) => ({ path, metadata: {}, position }));
    await assert.rejects(
      EmbedOutput.open({ out: `${dir}/o.npy`, header: header(inputs, "npy", "other"), inputs, resume: true }),
      /Cannot resume ".*o\.npy": it was made with model "m", this run uses other/,
    );
  });
});
