/**
 * `deno task embed` end to end, as a user runs it: every fixture case through the command line (the .npy
 * read back and compared with the float64 reference), a multi-image batch, exit codes and messages.
 * The adapter is whatever DENO_WEBGPU_BACKEND selects; CI runs this file on both of Mesa's.
 */
import assert from "node:assert/strict";
import { decodeNpyFloat32 } from "../cli/npy.ts";
import {
  caseImagePath,
  caseWeightsPath,
  embeddingBound,
  fixtureCases,
  fixturesMissing,
  readReference,
} from "./_fixtures.ts";
import { relativeMaxError } from "./_compare.ts";
import { SKIP_SLOW } from "./_gpu.ts";
import { PROCEDURAL_ARCHITECTURES } from "../cli/weights_arg.ts";
import { bitArchitecture } from "../models/bit_arch.ts";

const EMBED = new URL("../cli/embed.ts", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;

async function embedCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-net", EMBED, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "derm-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The `procedural:` argument giving a case's weights, when they are not stored. */
function proceduralArgument(layers: number[], channels: number[], stem: number, seed: string): string {
  const want = JSON.stringify(bitArchitecture(layers, channels, stem));
  const name = Object.entries(PROCEDURAL_ARCHITECTURES).find(([, a]) => JSON.stringify(a) === want)?.[0];
  if (!name) throw new Error(`No procedural architecture matches layers ${layers}, channels ${channels}`);
  return `procedural:${name}:${seed}`;
}

const missing = fixturesMissing();
if (missing) console.warn(`skipped command-line parity tests: ${missing}`);

for (const c of missing ? [] : fixtureCases()) {
  Deno.test({
    name: `embed CLI: ${c.name} matches the float64 reference`,
    ignore: c.size >= 224 && SKIP_SLOW,
    async fn() {
      await withTempDir(async (dir) => {
        const weights = caseWeightsPath(c) ?? proceduralArgument(c.layers, c.channels, c.stem_chs, c.seed);
        const out = `${dir}/e.npy`;
        const r = await embedCli([
          "--weights",
          weights,
          "--preset",
          c.preset,
          "--size",
          String(c.size),
          "--out",
          out,
          caseImagePath(c),
        ]);
        assert.equal(r.code, 0, r.stderr);
        const { shape, data } = decodeNpyFloat32(await Deno.readFile(out));
        const ref = readReference(c.name);
        const want = ref.tensors.get("embedding_f64")!.data;
        assert.deepEqual(shape, [1, want.length]);
        const error = relativeMaxError(data, want);
        const bound = embeddingBound(ref.metadata);
        console.log(
          `${c.name} via CLI: relative error ${error.toExponential(2)} (bound ${bound.toExponential(2)})`,
        );
        assert.ok(error <= bound, `${c.name}: ${error} over ${bound}`);
        assert.equal(await Deno.readTextFile(`${out}.paths.txt`), `${caseImagePath(c)}\n`);
      });
    },
  });
}

if (!missing) {
  Deno.test("embed CLI: rows follow the input order and match embedding each image alone", async () => {
    const c = fixtureCases().find((x) => x.name === "tiny-derm-96")!;
    const images = fixtureCases().filter((x) => x.name.startsWith("tiny-derm-96")).map(caseImagePath)
      .reverse();
    await withTempDir(async (dir) => {
      const common = ["--weights", caseWeightsPath(c)!, "--size", "96"];
      const r = await embedCli([...common, "--batch", "3", "--out", `${dir}/all.npy`, ...images]);
      assert.equal(r.code, 0, r.stderr);
      const all = decodeNpyFloat32(await Deno.readFile(`${dir}/all.npy`));
      assert.deepEqual(all.shape, [images.length, 1024]);
      assert.deepEqual((await Deno.readTextFile(`${dir}/all.npy.paths.txt`)).trim().split("\n"), images);
      for (const [i, image] of images.entries()) {
        const one = await embedCli([...common, "--out", `${dir}/one.npy`, image]);
        assert.equal(one.code, 0, one.stderr);
        assert.deepEqual(
          decodeNpyFloat32(await Deno.readFile(`${dir}/one.npy`)).data,
          all.data.slice(i * 1024, (i + 1) * 1024),
        );
      }
    });
  });
}

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
  assert.match(badPreset.stderr, /--preset must be "derm" or "bit", got "tf"/);
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
    const w = await embedCli(["--weights", weights, "--out", `${dir}/e.npy`, caseOrSample()]);
    assert.equal(w.code, 1);
    assert.match(w.stderr, /cut\.safetensors/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["broken.png", "cut.safetensors"]);
  });
});

function caseOrSample(): string {
  return new URL("../samples/ISIC_0000101.jpg", import.meta.url).pathname;
}
