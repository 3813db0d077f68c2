/**
 * A sharded run simulated here as a Slurm array would run it: three tasks of `deploy/slurm/embed-array.sh`
 * (`deploy/embed-shard.sh`, `embed --shard I/3 --resume`) at once, one of them killed with SIGKILL in the
 * middle and started again, then `deploy/slurm/merge.sh`, and `deno task merge` into every format. Each
 * merged file must equal, byte for byte, the file one unsharded run writes (rows, paths, metadata, errors
 * file). The inputs: generated PNGs through a `--list` CSV with a metadata column, one of them corrupt.
 * Model: the procedural tiny-bit at 64, the cheapest there is.
 */
import assert from "node:assert/strict";
import { embedCli, ROOT } from "./_embed_cli.ts";
import { withTempDir } from "./_temp.ts";
import { crc32 } from "../engine/crc32.ts";
import { shardOf } from "../cli/shard.ts";

const MODEL = ["--weights", "procedural:tiny-bit", "--size", "64"];
const EXTRA = ["--batch", "2", "--workers", "1", "--checkpoint-every", "4"];
const FORMATS = ["npy", "jsonl", "parquet", "safetensors"] as const;
const IMAGES = 21;

/** A small RGB PNG (filter 0, stored deflate through CompressionStream). */
async function png(seed: number, size = 20): Promise<Uint8Array> {
  const raw = new Uint8Array(size * (1 + 3 * size));
  let s = seed;
  for (let i = 0; i < raw.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    raw[i] = i % (1 + 3 * size) === 0 ? 0 : s >>> 24;
  }
  const z = new Uint8Array(
    await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer(),
  );
  const chunk = (type: string, data: Uint8Array) => {
    const out = new Uint8Array(12 + data.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, data.length);
    out.set(new TextEncoder().encode(type), 4);
    out.set(data, 8);
    v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  };
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, size);
  new DataView(ihdr.buffer).setUint32(4, size);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", z),
    chunk("IEND", new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, cwd: ROOT, env, stdout: "piped", stderr: "piped" })
    .output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

/** Rows committed to `out` (the last whole record of its commit log). */
async function committedRows(out: string): Promise<number> {
  const lines = (await Deno.readTextFile(`${out}.commits`).catch(() => "")).split("\n").slice(1, -1);
  return lines.length === 0 ? 0 : JSON.parse(lines.at(-1)!.split("\t")[0]).n;
}

/** The files of an output: the file and its sidecars and errors file, by suffix. */
async function outputFiles(base: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for (const suffix of ["", ".paths.txt", ".json", ".errors.jsonl"]) {
    const bytes = await Deno.readFile(base + suffix).catch(() => undefined);
    if (bytes) files.set(suffix, bytes);
  }
  return files;
}

/**
 * The first of `${dir}/in0`, `${dir}/in1`, ... in which every one of `count` shards holds `min` or more of
 * `names`, and how many each holds there. Shards hash absolute paths, and `dir` is a temporary directory
 * with a random name, so a fixed folder would leave a shard short in some runs; searching keeps each
 * test's precondition true in every run.
 */
function inputFolder(
  dir: string,
  names: readonly string[],
  count: number,
  min: number,
): { folder: string; sizes: number[] } {
  const sizes = (folder: string) =>
    Array.from(
      { length: count },
      (_, s) => names.filter((n) => shardOf(`${folder}/${n}`, count) === s).length,
    );
  for (let attempt = 0;; attempt++) {
    const folder = `${dir}/in${attempt}`;
    const held = sizes(folder);
    if (held.every((n) => n >= min)) return { folder, sizes: held };
  }
}

Deno.test("shards of a Slurm-style array, one killed and resumed, merge into the one-run file in every format", async () => {
  await withTempDir(async (dir) => {
    const names = Array.from({ length: IMAGES }, (_, i) => `img_${String(i).padStart(2, "0")}.png`);
    names.splice(9, 0, "img_bad.png");
    // The shard that gets killed must hold enough rows to be cut in the middle: 4 or more in every shard (a
    // random temporary name alone falls short about one time in ten: 10.5% of 20,000 simulated names).
    const { folder: inDir, sizes } = inputFolder(dir, names, 3, 4);
    assert.ok(sizes.every((n) => n >= 4), `shard sizes ${sizes}`);
    await Deno.mkdir(inDir);
    for (const [i, name] of names.filter((n) => n !== "img_bad.png").entries()) {
      await Deno.writeFile(`${inDir}/${name}`, await png(i + 1));
    }
    await Deno.writeTextFile(`${inDir}/img_bad.png`, "not an image\n");
    await Deno.writeTextFile(
      `${inDir}/labels.csv`,
      `path,site\n${names.map((n, i) => `${n},${i % 3 === 0 ? "" : `site ${i}`}`).join("\n")}\n`,
    );
    const inputs = ["--list", `${inDir}/labels.csv`];
    const victim = sizes.indexOf(Math.max(...sizes));

    for (const ext of FORMATS) {
      const r = await embedCli([...MODEL, ...EXTRA, "--quiet", "--out", `${dir}/whole.${ext}`, ...inputs]);
      assert.equal(r.code, 1, r.stderr); // the corrupt image
      assert.match(r.stderr, /img_bad\.png/);
    }

    const shardDir = `${dir}/shards`;
    const env = {
      DERM_WEBGPU_DIR: ROOT,
      DERM_WEIGHTS: MODEL[1],
      DERM_EMBED_ARGS: [...MODEL.slice(2), ...EXTRA].join(" "),
      DERM_INPUTS: inputs.join(" "),
      DERM_OUT_DIR: shardDir,
      DERM_FORMAT: "parquet",
      SLURM_ARRAY_TASK_MIN: "0",
      SLURM_ARRAY_TASK_MAX: "2",
      SLURM_ARRAY_TASK_COUNT: "3",
    };
    const task = (i: number) =>
      new Deno.Command("bash", {
        args: [`${ROOT}deploy/slurm/embed-array.sh`],
        cwd: ROOT,
        env: { ...env, SLURM_ARRAY_TASK_ID: String(i) },
        stdout: "null",
        stderr: "piped",
      }).spawn();
    const tasks = [0, 1, 2].map(task);
    const cut = `${shardDir}/embeddings-${victim}-of-3.parquet`;
    // Kill the victim's deno (the script's child) once it has committed some rows.
    let before = 0;
    for (let i = 0; i < 6000 && before < 3; i++) {
      before = await committedRows(cut);
      if (before < 3) await new Promise((r) => setTimeout(r, 10));
    }
    // Read through cat: Deno's permissions let only --allow-all read /proc, and the test task has --allow-run.
    const pid = tasks[victim].pid;
    const listing = await new Deno.Command("cat", { args: [`/proc/${pid}/task/${pid}/children`] }).output();
    const children = new TextDecoder().decode(listing.stdout).trim().split(/\s+/).map(Number);
    assert.equal(children.length, 1, `children of the task: ${children}`);
    Deno.kill(children[0], "SIGKILL");
    const statuses = await Promise.all(tasks.map((t) => t.output()));
    statuses.forEach((s, i) => {
      if (i !== victim) assert.equal(s.code, 0, new TextDecoder().decode(s.stderr));
    });
    assert.notEqual(statuses[victim].code, 0, "the killed task reported success");
    const committed = await committedRows(cut);
    assert.ok(committed >= 3 && committed < sizes[victim], `${committed} of ${sizes[victim]} rows committed`);
    await assert.rejects(Deno.stat(cut), Deno.errors.NotFound);

    // Requeued: the same task again resumes in place.
    const again = await task(victim).output();
    assert.equal(again.code, 0, new TextDecoder().decode(again.stderr));
    await assert.rejects(Deno.stat(`${cut}.commits`), Deno.errors.NotFound);

    // The array's merge job, then merges into the other formats; each against the one-run file.
    const merged = await run("bash", [`${ROOT}deploy/slurm/merge.sh`], { ...env, DERM_SHARDS: "3" });
    assert.equal(merged.code, 1, merged.stderr); // one row missing: the corrupt image
    assert.match(merged.stderr, /1 row\(s\) missing \(positions 9\); 1 failed in their shard/);
    const shards = [0, 1, 2].map((i) => `${shardDir}/embeddings-${i}-of-3.parquet`);
    for (const ext of FORMATS) {
      const out = ext === "parquet" ? `${shardDir}/embeddings.parquet` : `${dir}/merged.${ext}`;
      if (ext !== "parquet") {
        const m = await run(Deno.execPath(), [
          "run",
          "-A",
          `${ROOT}cli/merge.ts`,
          "--quiet",
          "--out",
          out,
          ...shards,
        ]);
        assert.equal(m.code, 1, m.stderr);
      }
      const got = await outputFiles(out);
      const want = await outputFiles(`${dir}/whole.${ext}`);
      assert.deepEqual([...got.keys()], [...want.keys()], ext);
      for (const [suffix, bytes] of want) assert.deepEqual(got.get(suffix), bytes, `${ext}${suffix}`);
    }
    // Shards of mixed formats merge the same way: shard 0 converted to .npy, shard 2 to .jsonl (merging one
    // shard alone keeps it a shard).
    const mixed = [`${dir}/s0.npy`, shards[1], `${dir}/s2.jsonl`];
    for (const [from, to] of [[shards[0], mixed[0]], [shards[2], mixed[2]]]) {
      const c = await run(Deno.execPath(), [
        "run",
        "-A",
        `${ROOT}cli/merge.ts`,
        "--quiet",
        "--out",
        to,
        from,
      ]);
      assert.equal(c.code, 1, c.stderr); // on its own, a shard misses the others' rows
    }
    const m = await run(Deno.execPath(), [
      "run",
      "-A",
      `${ROOT}cli/merge.ts`,
      "--out",
      `${dir}/mixed.npy`,
      ...mixed,
    ]);
    assert.equal(m.code, 1, m.stderr);
    const got = await outputFiles(`${dir}/mixed.npy`);
    for (const [suffix, bytes] of await outputFiles(`${dir}/whole.npy`)) {
      assert.deepEqual(got.get(suffix), bytes, `mixed .npy${suffix}`);
    }
  });
});

Deno.test("merge refuses shards of different models, overlapping shards, and a shard given twice; an empty shard writes nothing", async () => {
  await withTempDir(async (dir) => {
    // Both halves must hold an image, or that shard writes no file (embed says so and exits 0; a random
    // temporary name alone leaves one half empty one time in eight).
    const names = [0, 1, 2, 3].map((i) => `p${i}.png`);
    const inDir = inputFolder(dir, names, 2, 1).folder;
    await Deno.mkdir(inDir);
    for (const [i, name] of names.entries()) await Deno.writeFile(`${inDir}/${name}`, await png(100 + i, 12));
    const embed = (extra: string[], out: string) =>
      embedCli([...EXTRA, "--quiet", ...extra, "--out", out, inDir]);
    assert.equal((await embed([...MODEL, "--shard", "0/2"], `${dir}/a0.npy`)).code, 0);
    assert.equal(
      (await embed(["--weights", "procedural:tiny-bit:7", "--size", "64", "--shard", "1/2"], `${dir}/b1.npy`))
        .code,
      0,
    );
    assert.equal((await embed([...MODEL], `${dir}/whole.npy`)).code, 0);
    const merge = (...args: string[]) => run(Deno.execPath(), ["run", "-A", `${ROOT}cli/merge.ts`, ...args]);
    const models = await merge("--out", `${dir}/m.npy`, `${dir}/a0.npy`, `${dir}/b1.npy`);
    assert.equal(models.code, 1);
    assert.match(models.stderr, /expected model "procedural:tiny-bit", got "procedural:tiny-bit:7"/);
    const twice = await merge("--out", `${dir}/m.npy`, `${dir}/a0.npy`, `${dir}/a0.npy`);
    assert.match(twice.stderr, /shard 0\/2 is both/);
    const overlap = await merge("--out", `${dir}/m.npy`, `${dir}/whole.npy`, `${dir}/a0.npy`);
    assert.equal(overlap.code, 1);
    assert.match(overlap.stderr, /expected a shard of 2, got an unsharded run/);
    // A shard that holds none of the images (four images, 64 shards) loads no model and writes no file.
    const empty = Array.from({ length: 64 }, (_, s) => s).find((s) =>
      names.every((n) => shardOf(`${inDir}/${n}`, 64) !== s)
    )!;
    const none = await embed([...MODEL, "--shard", `${empty}/64`], `${dir}/none.npy`);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stderr, new RegExp(`shard ${empty}/64 holds none of the 4 images`));
    await assert.rejects(Deno.stat(`${dir}/none.npy`), Deno.errors.NotFound);
    const usage = await merge(`${dir}/a0.npy`);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--out is required/);
  });
});
