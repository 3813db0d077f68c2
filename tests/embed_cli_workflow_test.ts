/**
 * `deno task embed` in depth, end to end through the command line with the tiny procedural model: every
 * input form and output format (read back by independent parsers), 16-bit PNG and EXIF orientation,
 * corrupt and truncated files in a folder, `--strict`, non-finite embeddings, and runs killed with
 * SIGKILL after a checkpoint or between two and resumed, compared byte for byte with an uninterrupted run
 * (every format, `--shard` and merge: tests/shard_merge_test.ts); --help,
 * a bad command line, a corrupt image and truncated weights.
 * Images are generated here (PNG) or taken from `samples/` (JPEG).
 */
import assert from "node:assert/strict";
import { parquetReadObjects } from "hyparquet";
import { decodeImage } from "../engine/image_decode.ts";
import { withExifOrientation } from "../cli/exif.ts";
import { crc32 } from "../engine/crc32.ts";
import { EMBED, embedCli, embedCommand, SAMPLES } from "./_embed_cli.ts";
import { withTempDir } from "./_temp.ts";
import { CheckpointBuilder } from "./_torch_checkpoint_writer.ts";
import { call, dict, global } from "./_pickle_writer.ts";
import { fixtureCheckpointFile } from "./_fixtures.ts";

const MODEL = ["--weights", "procedural:tiny-derm", "--size", "96", "--workers", "1"];
const D = 1024;

// ---------------------------------------------------------------------------------------------------------
// A minimal PNG encoder (RGB, 8 or 16 bit, filter 0), independent of the engine's decoder.

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function zlib(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** PNG of RGB `pixels` (3 bytes per pixel); at 16 bits each sample is `v << 8 | lowByte(x, y, c)`. */
async function encodePng(
  width: number,
  height: number,
  pixels: Uint8Array,
  depth: 8 | 16,
): Promise<Uint8Array> {
  const bpp = 3 * (depth / 8);
  const raw = new Uint8Array(height * (1 + width * bpp));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const v = pixels[(y * width + x) * 3 + c];
        const o = y * (1 + width * bpp) + 1 + x * bpp + c * (depth / 8);
        raw[o] = v;
        if (depth === 16) raw[o + 1] = (x * 37 + y * 11 + c * 101) & 0xff; // junk low byte, must be ignored
      }
    }
  }
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([depth, 2, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", await zlib(raw)),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

/** Seeded pseudo-random RGB pixels. */
function randomPixels(width: number, height: number, seed: number): Uint8Array {
  const p = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  for (let i = 0; i < p.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    p[i] = s >>> 24;
  }
  return p;
}

/** Writes `count` random PNGs named img_000.png... under `dir`. */
async function writeRandomPngs(dir: string, count: number, size = 24): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const paths = [];
  for (let i = 0; i < count; i++) {
    const path = `${dir}/img_${String(i).padStart(3, "0")}.png`;
    await Deno.writeFile(
      path,
      await encodePng(size, size + (i % 3), randomPixels(size, size + (i % 3), i + 1), 8),
    );
    paths.push(path);
  }
  return paths;
}

/** Independent .npy reader: parses the header text, returns shape and data. */
function readNpy(bytes: Uint8Array): { shape: number[]; data: Float32Array } {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const headerLength = bytes[8] | (bytes[9] << 8);
  const header = new TextDecoder().decode(bytes.subarray(10, 10 + headerLength));
  assert.match(header, /'descr': '<f4'/);
  const shape = /'shape': \((\d+), (\d+)\)/.exec(header)!.slice(1).map(Number);
  return { shape, data: new Float32Array(bytes.slice(10 + headerLength).buffer) };
}

function rowsOf(data: Float32Array): Float32Array[] {
  return Array.from({ length: data.length / D }, (_, i) => data.slice(i * D, (i + 1) * D));
}

// ---------------------------------------------------------------------------------------------------------

Deno.test("embed CLI: folders, globs, --list CSV and duplicates, into all four formats with the same rows", async () => {
  await withTempDir(async (dir) => {
    const generated = await writeRandomPngs(`${dir}/photos/sub`, 2);
    await Deno.mkdir(`${dir}/more`);
    for (const s of SAMPLES.slice(0, 2)) await Deno.copyFile(s, `${dir}/more/${s.split("/").pop()}`);
    await Deno.writeTextFile(
      `${dir}/labels.csv`,
      `path,diagnosis\n${SAMPLES[2]},nevus\n${dir}/more/ISIC_0000101.jpg,melanoma\n`,
    );
    const inputs = [`${dir}/photos`, `${dir}/more/*.jpg`, generated[0], "--list", `${dir}/labels.csv`];
    const order = [...generated, `${dir}/more/ISIC_0000101.jpg`, `${dir}/more/ISIC_0000102.jpg`, SAMPLES[2]];
    const outs: Record<string, Float32Array[]> = {};
    for (const ext of ["npy", "jsonl", "parquet", "safetensors"]) {
      const out = `${dir}/e.${ext}`;
      const r = await embedCli([...MODEL, "--quiet", "--batch", "2", "--out", out, ...inputs]);
      assert.equal(r.code, 0, r.stderr);
      const bytes = await Deno.readFile(out);
      if (ext === "npy") {
        const { shape, data } = readNpy(bytes);
        assert.deepEqual(shape, [order.length, D]);
        outs[ext] = rowsOf(data);
        assert.deepEqual((await Deno.readTextFile(`${out}.paths.txt`)).trim().split("\n"), order);
        const side = JSON.parse(await Deno.readTextFile(`${out}.json`));
        assert.equal(side.input_size, 96);
        assert.match(side.engine, /^derm-webgpu /);
        assert.equal(side.rows[4].metadata.diagnosis, "nevus");
        assert.match(side.rows[0].hash, /^[0-9a-f]{64}$/);
      } else if (ext === "jsonl") {
        const lines = new TextDecoder().decode(bytes).trim().split("\n").map((l) => JSON.parse(l));
        assert.deepEqual(lines.map((l) => l.path), order);
        assert.equal(lines[2].metadata.diagnosis, undefined); // the folder's glob came before the list
        assert.equal(lines[4].metadata.diagnosis, "nevus");
        assert.equal(lines[0].preset, "derm");
        const hash = Array.from(
          new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(order[0]))),
          (b) => b.toString(16).padStart(2, "0"),
        ).join("");
        assert.equal(lines[0].hash, hash);
        outs[ext] = lines.map((l) => Float32Array.from(l.embedding));
      } else if (ext === "parquet") {
        const objects = await parquetReadObjects({ file: bytes.buffer });
        assert.deepEqual(objects.map((o) => o.path), order);
        assert.deepEqual(objects.map((o) => o.diagnosis), [null, null, null, null, "nevus"]);
        outs[ext] = objects.map((o) => Float32Array.from(o.embedding as number[]));
      } else {
        const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
        const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
        assert.deepEqual(header.embeddings.shape, [order.length, D]);
        assert.deepEqual(JSON.parse(header.__metadata__.paths), order);
        assert.equal(header.__metadata__.model, "procedural:tiny-derm");
        const start = 8 + n + header.embeddings.data_offsets[0];
        outs[ext] = rowsOf(
          new Float32Array(bytes.slice(start, 8 + n + header.embeddings.data_offsets[1]).buffer),
        );
      }
    }
    for (const ext of ["jsonl", "parquet", "safetensors"]) assert.deepEqual(outs[ext], outs.npy, ext);
    assert.ok(outs.npy.every((r) => r.every(Number.isFinite)));
  });
});

Deno.test("embed CLI: a 16-bit PNG embeds as its high bytes; --exif-orientation turns an Orientation 6 JPEG", async () => {
  await withTempDir(async (dir) => {
    const pixels = randomPixels(20, 14, 7);
    await Deno.writeFile(`${dir}/p8.png`, await encodePng(20, 14, pixels, 8));
    await Deno.writeFile(`${dir}/p16.png`, await encodePng(20, 14, pixels, 16));
    const jpeg = await Deno.readFile(SAMPLES[0]);
    await Deno.writeFile(`${dir}/plain.jpg`, jpeg);
    await Deno.writeFile(`${dir}/exif6.jpg`, withExifOrientation(jpeg, 6));
    // The reference: the JPEG's pixels rotated 90° clockwise here, stored losslessly as PNG.
    const img = await decodeImage(jpeg, "plain.jpg");
    const [w, h] = [img.width, img.height];
    const rotated = new Uint8Array(w * h * 3);
    for (let y = 0; y < w; y++) {
      for (let x = 0; x < h; x++) {
        for (let c = 0; c < 3; c++) rotated[(y * h + x) * 3 + c] = img.rgba[((h - 1 - x) * w + y) * 4 + c];
      }
    }
    await Deno.writeFile(`${dir}/rotated.png`, await encodePng(h, w, rotated, 8));
    const files = ["p8.png", "p16.png", "plain.jpg", "exif6.jpg", "rotated.png"].map((f) => `${dir}/${f}`);
    const run = async (extra: string[]) => {
      const r = await embedCli([...MODEL, "--quiet", ...extra, "--out", `${dir}/e.npy`, ...files]);
      assert.equal(r.code, 0, r.stderr);
      return rowsOf(readNpy(await Deno.readFile(`${dir}/e.npy`)).data);
    };
    const ignored = await run([]);
    assert.deepEqual(ignored[1], ignored[0], "16-bit PNG differs from its 8-bit high bytes");
    assert.deepEqual(ignored[3], ignored[2], "EXIF orientation must be ignored by default");
    assert.notDeepEqual(ignored[4], ignored[2]);
    const applied = await run(["--exif-orientation"]);
    assert.deepEqual(applied[3], applied[4], "--exif-orientation did not rotate as Orientation 6 says");
    assert.deepEqual(applied[2], ignored[2]);
  });
});

Deno.test("embed CLI: corrupt, truncated and non-image files are reported and skipped, also between batches in flight; --strict stops", async () => {
  await withTempDir(async (dir) => {
    const good = await writeRandomPngs(`${dir}/in`, 3);
    const png = await Deno.readFile(good[0]);
    await Deno.writeFile(`${dir}/in/img_000b_truncated.png`, png.subarray(0, png.length - 20));
    const jpeg = await Deno.readFile(SAMPLES[1]);
    await Deno.writeFile(`${dir}/in/img_001b_truncated.jpg`, jpeg.subarray(0, jpeg.length >> 1));
    await Deno.writeTextFile(`${dir}/in/img_002b_text.png`, "not an image\n");
    await Deno.writeFile(`${dir}/in/img_002c_empty.jpg`, new Uint8Array(0));
    const out = `${dir}/e.jsonl`;
    const r = await embedCli([...MODEL, "--batch", "2", "--out", out, `${dir}/in`, `${dir}/in/missing.png`]);
    assert.equal(r.code, 1, r.stderr);
    const lines = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.path), good);
    const errors = (await Deno.readTextFile(`${out}.errors.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.deepEqual(errors.map((e) => e.path.split("/").pop()), [
      "img_000b_truncated.png",
      "img_001b_truncated.jpg",
      "img_002b_text.png",
      "img_002c_empty.jpg",
      "missing.png",
    ]);
    assert.match(errors[0].reason, /truncated PNG/);
    assert.match(errors[1].reason, /truncated JPEG|corrupt JPEG/);
    assert.match(errors[2].reason, /unsupported format/);
    assert.match(errors[4].reason, /Cannot read/);
    for (const e of errors) assert.match(r.stderr, new RegExp(e.path.split("/").pop().replace(".", "\\.")));

    // Three one-image batches in flight, failures landing between them: the same files, byte for byte.
    const piped = `${dir}/p.jsonl`;
    const p = await embedCli([
      ...MODEL,
      "--quiet",
      "--batch",
      "1",
      "--in-flight",
      "3",
      "--out",
      piped,
      `${dir}/in`,
      `${dir}/in/missing.png`,
    ]);
    assert.equal(p.code, 1, p.stderr);
    assert.equal(await Deno.readTextFile(piped), await Deno.readTextFile(out));
    assert.equal(
      await Deno.readTextFile(`${piped}.errors.jsonl`),
      await Deno.readTextFile(`${out}.errors.jsonl`),
    );

    const strictOut = `${dir}/s.jsonl`;
    const s = await embedCli([...MODEL, "--strict", "--batch", "2", "--out", strictOut, `${dir}/in`]);
    assert.equal(s.code, 1);
    assert.equal(s.stderr.match(/^error: /gm)?.length, 1, s.stderr);
    assert.match(s.stderr, /img_000b_truncated\.png/);
  });
});

Deno.test("embed CLI: a non-finite embedding is an error for that image, never a row", async () => {
  await withTempDir(async (dir) => {
    // The procedural tiny-derm weights with gamma = beta = 3e38 in channel 0 of the final norm, as a timm-named safetensors.
    const { proceduralWeights } = await import("../models/registry.ts");
    const source = proceduralWeights("tiny-derm");
    const header: Record<string, unknown> = { __metadata__: { preset: "derm" } };
    const blobs: Uint8Array[] = [];
    let offset = 0;
    for await (const { entry, bytes } of source.stream()) {
      const copy = bytes.slice();
      // Finite weights (the loader refuses NaN) whose final norm overflows float32 to infinity.
      if (entry.name === "norm.bias" || entry.name === "norm.weight") {
        new DataView(copy.buffer).setFloat32(0, 3e38, true);
      }
      header[entry.name] = {
        dtype: entry.dtype,
        shape: entry.shape,
        data_offsets: [offset, offset + copy.length],
      };
      blobs.push(copy);
      offset += copy.length;
    }
    assert.ok("norm.bias" in header, "no final norm to poison");
    const head = new TextEncoder().encode(JSON.stringify(header));
    const file = new Uint8Array(8 + head.length + offset);
    new DataView(file.buffer).setBigUint64(0, BigInt(head.length), true);
    file.set(head, 8);
    blobs.reduce((o, b) => (file.set(b, o), o + b.length), 8 + head.length);
    await Deno.writeFile(`${dir}/nan.safetensors`, file);
    const images = await writeRandomPngs(`${dir}/in`, 2);
    const r = await embedCli([
      "--weights",
      `${dir}/nan.safetensors`,
      "--preset",
      "derm",
      "--size",
      "96",
      "--verbose",
      "--out",
      `${dir}/e.npy`,
      ...images,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /img_000\.png: embedding is not finite .*first at final_norm/);
    assert.match(r.stderr, /img_001\.png: embedding is not finite/);
    await assert.rejects(Deno.stat(`${dir}/e.npy`), Deno.errors.NotFound);
  });
});

/** Rows committed to `out` so far: the `n` of the last whole line of its commit log (0 without one). */
async function committedRows(out: string): Promise<number> {
  const text = await Deno.readTextFile(`${out}.commits`).catch(() => "");
  const lines = text.split("\n").slice(1, -1); // the header, and a line still being written
  return lines.length === 0 ? 0 : JSON.parse(lines.at(-1)!.split("\t")[0]).n;
}

Deno.test("embed CLI: a run killed after its first checkpoint and resumed writes the uninterrupted run's file", async () => {
  await withTempDir(async (dir) => {
    await writeRandomPngs(`${dir}/in`, 36, 32);
    const common = [...MODEL, "--batch", "2", "--checkpoint-every", "4", `${dir}/in`];
    const whole = await embedCli([...common, "--quiet", "--out", `${dir}/whole.parquet`]);
    assert.equal(whole.code, 0, whole.stderr);

    const out = `${dir}/cut.parquet`;
    const child = embedCommand([...common, "--quiet", "--out", out], "null").spawn();
    let killedAt = -1;
    for (let i = 0; i < 3000; i++) {
      // The first row group (checkpoint, 4 rows) is committed once 4 rows are.
      if (await committedRows(out) >= 4) {
        child.kill("SIGKILL");
        killedAt = i;
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const status = await child.status;
    assert.ok(killedAt >= 0, "no checkpoint appeared");
    assert.equal(status.signal, "SIGKILL", "the run finished before it could be killed");
    await assert.rejects(Deno.stat(out), Deno.errors.NotFound); // the output appears only when finished
    const committed = await committedRows(out);
    assert.ok(committed >= 4 && committed < 36, `${committed} rows committed`);

    const resumed = await embedCli([...common, "--resume", "--json", "--out", out]);
    assert.equal(resumed.code, 0, resumed.stderr);
    const summary = JSON.parse(resumed.stdout);
    assert.equal(summary.resume_mode, "in place");
    assert.ok(summary.resumed >= committed, `resumed ${summary.resumed} of ${committed} committed`);
    assert.equal(summary.embedded, 36 - summary.resumed);
    assert.deepEqual(await Deno.readFile(out), await Deno.readFile(`${dir}/whole.parquet`));
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["cut.parquet", "in", "whole.parquet"],
      "temporary files left behind",
    );
  });
});

Deno.test("embed CLI: a run killed between checkpoints loses at most the batch in flight", async () => {
  await withTempDir(async (dir) => {
    await writeRandomPngs(`${dir}/in`, 16, 32);
    const common = [...MODEL, "--batch", "2", "--checkpoint-every", "1000", `${dir}/in`];
    const whole = await embedCli([...common, "--quiet", "--out", `${dir}/whole.npy`]);
    assert.equal(whole.code, 0, whole.stderr);
    const out = `${dir}/cut.npy`;
    const child = embedCommand([...common, "--quiet", "--out", out], "null").spawn();
    let committed = 0;
    for (let i = 0; i < 3000 && committed < 4; i++) {
      committed = await committedRows(out);
      if (committed < 4) await new Promise((r) => setTimeout(r, 10));
    }
    child.kill("SIGKILL");
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL", "the run finished before it could be killed");
    assert.ok(committed >= 4, `only ${committed} rows committed`);
    await assert.rejects(Deno.stat(out), Deno.errors.NotFound);
    const resumed = await embedCli([...common, "--resume", "--json", "--out", out]);
    assert.equal(resumed.code, 0, resumed.stderr);
    const summary = JSON.parse(resumed.stdout);
    assert.ok(summary.resumed >= committed, `resumed ${summary.resumed}, committed ${committed}`);
    assert.equal(summary.resumed + summary.embedded, 16);
    assert.deepEqual(await Deno.readFile(out), await Deno.readFile(`${dir}/whole.npy`));
    assert.deepEqual(
      await Deno.readFile(`${out}.paths.txt`),
      await Deno.readFile(`${dir}/whole.npy.paths.txt`),
    );
    assert.deepEqual(await Deno.readFile(`${out}.json`), await Deno.readFile(`${dir}/whole.npy.json`));
    await assert.rejects(Deno.stat(`${out}.commits`), Deno.errors.NotFound);
  });
});

Deno.test("embed CLI: an unknown output extension or a pattern matching nothing exits 2", async () => {
  const ext = await embedCli([...MODEL, "--out", "x.csv", SAMPLES[0]]);
  assert.equal(ext.code, 2);
  assert.match(ext.stderr, /--out must end in \.npy, \.jsonl, \.parquet, \.safetensors, got "x\.csv"/);
  const glob = await embedCli([...MODEL, "--out", "x.npy", "/nonexistent-dir/*.png"]);
  assert.equal(glob.code, 2);
  assert.match(glob.stderr, /no image matches/);
});

Deno.test("embed CLI: --help documents every flag", async () => {
  const r = await embedCli(["--help"]);
  assert.equal(r.code, 0);
  const source = await Deno.readTextFile(EMBED);
  const options = [...source.matchAll(/^\s{8}([a-z-]+): \{ type:/gm)].map((m) => m[1]);
  assert.ok(options.length >= 7, `found options ${options}`);
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  for (const flag of options) {
    assert.match(r.stdout, new RegExp(`--${flag}\\b`), `--help lacks --${flag}`);
    assert.match(readme, new RegExp(`--${flag}\\b`), `README lacks --${flag}`);
  }
});

Deno.test("embed CLI: a bad command line exits 2 and says what is wrong", async () => {
  const noWeights = await embedCli(["--out", "x.npy", "a.png"]);
  assert.equal(noWeights.code, 2);
  assert.match(noWeights.stderr, /exactly one of --weights and --model is required/);
  const badPreset = await embedCli(["--weights", "w", "--preset", "tf", "--out", "x.npy", "a.png"]);
  assert.equal(badPreset.code, 2);
  assert.match(badPreset.stderr, /--preset must be one of derm, bit, imagenet, got "tf"/);
  const badArch = await embedCli(["--weights", "procedural:r7", "--out", "x.npy", "a.png"]);
  assert.equal(badArch.code, 1);
  assert.match(badArch.stderr, /unknown architecture "r7"/);
});

Deno.test("embed CLI: a corrupt image or truncated weights exit 1 naming the file, writing nothing", async () => {
  await withTempDir(async (dir) => {
    const image = `${dir}/broken.png`;
    await Deno.writeFile(
      image,
      new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]),
    );
    const r = await embedCli([
      "--weights",
      "procedural:tiny-bit",
      "--size",
      "64",
      "--out",
      `${dir}/e.npy`,
      image,
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /broken\.png/);
    const weights = `${dir}/cut.safetensors`;
    const header = new TextEncoder().encode(
      JSON.stringify({
        "stem.conv.weight": { dtype: "F32", shape: [32, 3, 7, 7], data_offsets: [0, 18816] },
      }),
    );
    const file = new Uint8Array(8 + header.length + 100);
    new DataView(file.buffer).setUint32(0, header.length, true);
    file.set(header, 8);
    await Deno.writeFile(weights, file);
    const w = await embedCli(["--weights", weights, "--out", `${dir}/e.npy`, SAMPLES[0]]);
    assert.equal(w.code, 1);
    assert.match(w.stderr, /cut\.safetensors/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["broken.png", "cut.safetensors"]);
  });
});

Deno.test("embed CLI: a PyTorch checkpoint (BYOL, legacy format) embeds like its procedural weights", async () => {
  await withTempDir(async (dir) => {
    const common = ["--preset", "imagenet", "--size", "64", "--resize", "73", "--quiet", SAMPLES[0]];
    const pth = await embedCli([
      "--weights",
      await fixtureCheckpointFile("groeger/tiny-resnet-64.pth"),
      "--out",
      `${dir}/pth.npy`,
      ...common,
    ]);
    assert.equal(pth.code, 0, pth.stderr);
    const procedural = await embedCli([
      "--weights",
      "procedural:tiny-resnet:fixture/tiny-resnet",
      "--out",
      `${dir}/procedural.npy`,
      ...common,
    ]);
    assert.equal(procedural.code, 0, procedural.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/pth.npy`), await Deno.readFile(`${dir}/procedural.npy`));
    const facts = JSON.parse(await Deno.readTextFile(`${dir}/pth.npy.json`));
    assert.match(facts.architecture, /^ResNet layers 1\/1\/1\/1 width_per_group 16/);
  });
});

Deno.test("embed CLI: a checkpoint that calls os.system exits 1 naming the file, runs nothing, writes nothing", async () => {
  await withTempDir(async (dir) => {
    const b = new CheckpointBuilder("zip");
    const s = b.storage("FloatStorage", new Uint8Array(4));
    const marker = `${dir}/pwned`;
    const evil = b.write(dict({
      state_dict: dict({ "conv1.weight": b.tensor(s, { size: [1] }) }),
      hook: call(global("os", "system"), [`touch ${marker}`]),
    }));
    await Deno.writeFile(`${dir}/evil.pth`, evil);
    const r = await embedCli(["--weights", `${dir}/evil.pth`, "--out", `${dir}/e.npy`, SAMPLES[0]]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /evil\.pth/);
    assert.match(r.stderr, /refused to call os\.system/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["evil.pth"]);
  });
});
