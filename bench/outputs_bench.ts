/**
 * `deno task bench:outputs`: the output writers of `embed`, without and with a GPU.
 *
 * - `--synthetic` (default): ROWS synthetic rows (D = 1024 floats, as the tiny model; two metadata
 *   columns; batches of 16 committed one by one, Parquet row groups of 256, real fsyncs) through each
 *   format's writer, each run in its own process so that its peak memory is its own. Figures: MB/s of
 *   embedding data (N x D x 4 bytes over the wall time from the first append to the finished file), bytes
 *   written per row (counted by the writer, and the process's `wchar` from /proc/self/io, which also sees
 *   everything else it wrote), peak resident memory (VmHWM from /proc/self/status, Deno's own ~50 MB
 *   included) and the JS heap still alive after a full collection at the end.
 * - `--images DIR`: real images with the tiny model (`procedural:tiny-bit --size 64`, checkpoint every
 *   64 images): 294 and 1,323 images (the 441 CC0 JPEGs of DIR copied three times under distinct folder
 *   names), bytes written per image from embed's `--json` summary; then the 1,323 sharded 3 ways (three
 *   processes at once) and merged, against the one run, byte for byte.
 * @module
 */
import { parseArgs } from "node:util";
import { DenoOutputFs } from "../cli/output_files.ts";
import { OutputWriter } from "../cli/output_writer.ts";
import { OUTPUT_FORMATS, type OutputFormat } from "../cli/output_drivers.ts";
import type { EmbeddingRow } from "../cli/output_rows.ts";

const D = 1024;
const BATCH = 16;
const ROW_GROUP = 256;
const ROOT = new URL("../", import.meta.url).pathname;

const HELP = `deno task bench:outputs: output writer figures (no GPU), and real images with the tiny model

Options:
  --synthetic        synthetic rows through each writer (the default)
  --rows LIST        row counts (default 1000,10000,100000)
  --formats LIST     formats (default npy,jsonl,parquet,safetensors)
  --images DIR       also the real-image figures, from the JPEGs of DIR (testdata/isic-cc0)
  --dir DIR          scratch folder (default: a new temporary one, removed after)
  --json             print the figures as JSON
  --help             show this help`;

function procStatus(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

function wchar(): number {
  const m = /^wchar: (\d+)/m.exec(Deno.readTextFileSync("/proc/self/io"));
  return m ? Number(m[1]) : NaN;
}

/** Child: writes `n` rows as `format` to `dir`, prints one JSON line of figures. */
async function child(format: OutputFormat, n: number, dir: string): Promise<void> {
  const info = {
    model: "procedural:tiny-bit",
    architecture: "bench",
    preset: "derm",
    size: 64,
    embeddingSize: D,
    engine: "derm-webgpu bench",
    inputs: n,
    inputsSha256: "00".repeat(32),
  };
  const fs = new DenoOutputFs();
  const out = `${dir}/bench.${format}`;
  const rowAt = (i: number): EmbeddingRow => {
    const embedding = new Float32Array(D);
    for (let j = 0; j < D; j++) embedding[j] = Math.sin(i * 0.37 + j * 0.011) * 3;
    return {
      path: `isic/batch-${Math.floor(i / 1000)}/ISIC_${String(i).padStart(7, "0")}.jpg`,
      hash: (i * 2654435761 >>> 0).toString(16).padStart(8, "0").repeat(8),
      metadata: { diagnosis: ["nevus", "melanoma", "bcc"][i % 3], site: `site ${i % 17}` },
      position: i,
      embedding,
    };
  };
  const w0 = wchar();
  const t0 = performance.now();
  const writer = await OutputWriter.create(fs, out, {
    format,
    info,
    metadataKeys: ["diagnosis", "site"],
    rowGroupRows: ROW_GROUP,
  });
  for (let i = 0; i < n; i += BATCH) {
    const rows = [];
    for (let k = i; k < Math.min(n, i + BATCH); k++) rows.push(rowAt(k));
    await writer.append(rows);
  }
  await writer.finish();
  const seconds = (performance.now() - t0) / 1000;
  const written = wchar() - w0;
  // What stays alive: the JS heap after a full collection (RSS also holds freed memory not yet returned).
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heapAfterGc = gc ? Deno.memoryUsage().heapUsed / 2 ** 20 : null;
  let fileBytes = 0;
  for await (const e of Deno.readDir(dir)) fileBytes += (await Deno.stat(`${dir}/${e.name}`)).size;
  console.log(JSON.stringify({
    format,
    rows: n,
    seconds,
    mb_per_s: (n * D * 4) / 1e6 / seconds,
    bytes_per_row: fs.bytesWritten / n,
    wchar_per_row: written / n,
    file_bytes_per_row: fileBytes / n,
    peak_rss_mib: procStatus("VmHWM") / 2 ** 20,
    heap_after_gc_mib: heapAfterGc,
  }));
}

interface SyntheticFigure {
  format: string;
  rows: number;
  seconds: number;
  mb_per_s: number;
  bytes_per_row: number;
  wchar_per_row: number;
  file_bytes_per_row: number;
  peak_rss_mib: number;
  heap_after_gc_mib: number | null;
}

async function synthetic(
  formats: OutputFormat[],
  counts: number[],
  scratch: string,
): Promise<SyntheticFigure[]> {
  const figures: SyntheticFigure[] = [];
  for (const format of formats) {
    for (const n of counts) {
      const dir = `${scratch}/${format}-${n}`;
      await Deno.mkdir(dir, { recursive: true });
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--config",
          `${ROOT}deno.dev.json`,
          "-A",
          "--v8-flags=--expose-gc",
          import.meta.filename!,
          "--child",
          format,
          String(n),
          dir,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      if (out.code !== 0) throw new Error(`Cannot bench ${format} at ${n} rows: exit ${out.code}`);
      const f = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
      figures.push(f);
      console.error(
        `${format} ${n}: ${f.mb_per_s.toFixed(1)} MB/s, ${
          (f.bytes_per_row / 1024).toFixed(2)
        } KiB/row, peak ${f.peak_rss_mib.toFixed(0)} MiB`,
      );
      await Deno.remove(dir, { recursive: true });
    }
  }
  return figures;
}

/** Runs embed with `args` (--json added); returns its summary and peak RSS (GNU time). */
async function embed(
  args: string[],
): Promise<{ summary: Record<string, any>; peakMib: number; seconds: number }> {
  const t0 = performance.now();
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "maxrss_kb=%M", Deno.execPath(), "run", "-A", `${ROOT}cli/embed.ts`, "--json", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.code !== 0) throw new Error(`embed failed (${out.code}): ${stderr}`);
  const peak = Number(/maxrss_kb=(\d+)/.exec(stderr)![1]) / 1024;
  return {
    summary: JSON.parse(new TextDecoder().decode(out.stdout)),
    peakMib: peak,
    seconds: (performance.now() - t0) / 1000,
  };
}

async function images(source: string, scratch: string) {
  const jpegs = [...Deno.readDirSync(source)].map((e) => e.name).filter((n) => n.endsWith(".jpg")).sort();
  if (jpegs.length !== 441) {
    throw new Error(`Cannot bench: expected 441 JPEGs in "${source}", got ${jpegs.length}`);
  }
  const list = (paths: string[], name: string) => {
    Deno.writeTextFileSync(`${scratch}/${name}`, paths.join("\n") + "\n");
    return `${scratch}/${name}`;
  };
  const all: string[] = [];
  for (const copy of ["copy1", "copy2", "copy3"]) {
    Deno.mkdirSync(`${scratch}/${copy}`, { recursive: true });
    for (const j of jpegs) {
      Deno.copyFileSync(`${source}/${j}`, `${scratch}/${copy}/${j}`);
      all.push(`${scratch}/${copy}/${j}`);
    }
  }
  const model = ["--weights", "procedural:tiny-bit", "--size", "64", "--checkpoint-every", "64", "--quiet"];
  const runs: Record<string, unknown>[] = [];
  for (const n of [294, 1323]) {
    for (const format of ["npy", "parquet"]) {
      const r = await embed([
        ...model,
        "--out",
        `${scratch}/one-${n}.${format}`,
        "--list",
        list(all.slice(0, n), `l${n}.txt`),
      ]);
      runs.push({
        images: n,
        format,
        seconds: r.seconds,
        images_per_second: r.summary.images_per_second,
        bytes_per_image: r.summary.output_bytes_written / n,
        peak_rss_mib: r.peakMib,
      });
      console.error(
        `one run ${n} ${format}: ${(r.summary.output_bytes_written / n / 1024).toFixed(2)} KiB/image`,
      );
    }
  }
  // 1,323 images in 3 shards at once, then merged.
  const t0 = performance.now();
  const shards = await Promise.all(
    [0, 1, 2].map((i) =>
      embed([
        ...model,
        "--shard",
        `${i}/3`,
        "--out",
        `${scratch}/shard-${i}.parquet`,
        "--list",
        `${scratch}/l1323.txt`,
      ])
    ),
  );
  const shardSeconds = (performance.now() - t0) / 1000;
  const m0 = performance.now();
  const merge = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}cli/merge.ts`,
      "--json",
      "--out",
      `${scratch}/merged.parquet`,
      ...[0, 1, 2].map((i) => `${scratch}/shard-${i}.parquet`),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const mergeSeconds = (performance.now() - m0) / 1000;
  const same = (a: string, b: string) => {
    const x = Deno.readFileSync(a);
    const y = Deno.readFileSync(b);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  };
  return {
    runs,
    shards: shards.map((s, i) => ({
      shard: `${i}/3`,
      images: s.summary.images,
      seconds: s.seconds,
      bytes_per_image: s.summary.output_bytes_written / s.summary.images,
      peak_rss_mib: s.peakMib,
    })),
    shard_wall_seconds: shardSeconds,
    merge: { code: merge.code, seconds: mergeSeconds, ...JSON.parse(new TextDecoder().decode(merge.stdout)) },
    merged_equals_one_run: same(`${scratch}/merged.parquet`, `${scratch}/one-1323.parquet`),
  };
}

if (import.meta.main) {
  if (Deno.args[0] === "--child") {
    await child(Deno.args[1] as OutputFormat, Number(Deno.args[2]), Deno.args[3]);
    Deno.exit(0);
  }
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      synthetic: { type: "boolean", default: false },
      rows: { type: "string", default: "1000,10000,100000" },
      formats: { type: "string", default: OUTPUT_FORMATS.join(",") },
      images: { type: "string" },
      dir: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const scratch = values.dir ?? await Deno.makeTempDir({ prefix: "derm-outputs-bench-" });
  try {
    const result: Record<string, unknown> = {};
    if (values.synthetic || !values.images) {
      result.synthetic = await synthetic(
        values.formats.split(",") as OutputFormat[],
        values.rows.split(",").map(Number),
        scratch,
      );
    }
    if (values.images) result.images = await images(values.images, scratch);
    console.log(JSON.stringify(result, null, 2));
  } finally {
    if (!values.dir) await Deno.remove(scratch, { recursive: true });
  }
}
