/**
 * `deno task embed` against the float64 references: every fixture case through the command line (the .npy
 * read back and compared with the reference within the fixtures' bound), and a multi-image batch whose rows
 * equal those of each image embedded alone.
 * The adapter is whatever DENO_WEBGPU_BACKEND selects; CI runs this file on both of Mesa's.
 */
import assert from "node:assert/strict";
import { decodeNpyFloat32 } from "../cli/npy.ts";
import {
  caseImagePath,
  caseWeightsPath,
  embeddingBound,
  F16_BOUND,
  fixtureCases,
  groegerBound,
  type GroegerCase,
  groegerCases,
  groegerImagePath,
  readGroegerReference,
  readReference,
} from "./_fixtures.ts";
import { relativeMaxError } from "./_compare.ts";
import { SKIP_SLOW } from "./_gpu.ts";
import { PROCEDURAL_MODELS } from "../models/registry.ts";
import { bitArchitecture } from "../models/bit_arch.ts";
import { bitProceduralSource } from "../models/bit_names.ts";
import { embedCli } from "./_embed_cli.ts";
import { f16GpuTest } from "./_f16.ts";
import { withTempDir } from "./_temp.ts";
import { testdataPath } from "./_testdata.ts";

/** The `procedural:` argument giving a case's weights, when they are not stored. */
function proceduralArgument(layers: number[], channels: number[], stem: number, seed: string): string {
  const listing = (t: { tensors: ReadonlyMap<string, { shape: readonly number[] }> }) =>
    JSON.stringify([...t.tensors].map(([n, e]) => [n, e.shape]));
  const want = listing(bitProceduralSource(bitArchitecture(layers, channels, stem), seed));
  const name = Object.keys(PROCEDURAL_MODELS).find((n) =>
    listing(PROCEDURAL_MODELS[n].source(seed)) === want
  );
  if (!name) throw new Error(`No procedural architecture matches layers ${layers}, channels ${channels}`);
  return `procedural:${name}:${seed}`;
}

for (const c of fixtureCases()) {
  Deno.test({
    name: `embed CLI: ${c.name} matches the float64 reference`,
    ignore: c.size >= 224 && SKIP_SLOW,
    async fn() {
      await withTempDir(async (dir) => {
        const weights = await caseWeightsPath(c) ??
          proceduralArgument(c.layers, c.channels, c.stem_chs, c.seed);
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

/** The command line embedding tiny-derm-96's image into `out` at precision f16. */
async function embedF16(out: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const c = fixtureCases().find((x) => x.name === "tiny-derm-96")!;
  const weights = await caseWeightsPath(c) ?? proceduralArgument(c.layers, c.channels, c.stem_chs, c.seed);
  const args = ["--weights", weights, "--preset", c.preset, "--size", String(c.size), "--precision", "f16"];
  return await embedCli([...args, "--json", "--quiet", "--out", out, caseImagePath(c)]);
}

f16GpuTest(
  "embed CLI: --precision f16 embeds tiny-derm-96 within the f16 bound and says so in --json",
  async () => {
    await withTempDir(async (dir) => {
      const r = await embedF16(`${dir}/e.npy`);
      assert.equal(r.code, 0, r.stderr);
      const { data } = decodeNpyFloat32(await Deno.readFile(`${dir}/e.npy`));
      const ref = readReference("tiny-derm-96");
      const error = relativeMaxError(data, ref.tensors.get("embedding_f64")!.data);
      console.log(`tiny-derm-96 via CLI at f16: relative error ${error.toExponential(2)}`);
      assert.ok(error <= F16_BOUND, `${error}`);
      const summary = JSON.parse(r.stdout);
      assert.equal(summary.precision, "f16");
      assert.match(summary.model, /precision f16/);
      assert.ok(summary.weight_bytes > 0);
      const facts = JSON.parse(await Deno.readTextFile(`${dir}/e.npy.json`));
      assert.equal(facts.precision, "f16");
      // Rows of another precision are not mixed in: resuming at f32 is refused, naming the precision.
      const c = fixtureCases().find((x) => x.name === "tiny-derm-96")!;
      const weights = await caseWeightsPath(c) ??
        proceduralArgument(c.layers, c.channels, c.stem_chs, c.seed);
      const again = await embedCli([
        ...["--weights", weights, "--preset", c.preset, "--size", String(c.size), "--resume", "--quiet"],
        ...["--out", `${dir}/e.npy`, caseImagePath(c)],
      ]);
      assert.equal(again.code, 1, again.stderr);
      assert.match(again.stderr, /it was made with precision "f16", this run uses f32/);
    });
  },
  async (gpu) => {
    await withTempDir(async (dir) => {
      const r = await embedF16(`${dir}/e.npy`);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(
        r.stderr.includes(
          `error: Cannot use precision "f16" on adapter "${gpu.adapterInfo.description}": expected the "shader-f16" feature`,
        ),
        r.stderr,
      );
    });
  },
);

Deno.test("embed CLI: --precision other than f32 or f16 is a usage error (exit 2)", async () => {
  const r = await embedCli([
    "--weights",
    "procedural:tiny-bit",
    "--precision",
    "bf16",
    "--out",
    "x.npy",
    "a.png",
  ]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--precision must be one of f32, f16, got "bf16"/);
});

/** The procedural models of the Gröger et al. cases, by ResNet layers or ViT width. */
const GROEGER_PROCEDURAL: Record<string, string> = {
  "resnet 3,4,6,3": "resnet50",
  "resnet 1,1,1,1": "tiny-resnet",
  "vit 48": "tiny-vit",
  "vit 192": "vit-t16",
  "vit 384": "vit-s16",
};

/** The `--weights` of a Gröger et al. case: its procedural model. */
function groegerWeightsArgument(c: GroegerCase): string {
  const key = c.family === "resnet" ? `resnet ${c.layers!.join()}` : `vit ${c.dim}`;
  const name = GROEGER_PROCEDURAL[key];
  if (!name) throw new Error(`No procedural model for ${c.name} (${key})`);
  return `procedural:${name}:${c.seed}`;
}

for (const c of groegerCases()) {
  Deno.test({
    name: `embed CLI: ${c.name} matches the float64 reference (--preset imagenet --resize ${c.resize})`,
    ignore: c.size >= 224 && SKIP_SLOW,
    async fn() {
      await withTempDir(async (dir) => {
        const out = `${dir}/e.npy`;
        const args = [
          "--weights",
          groegerWeightsArgument(c),
          "--preset",
          "imagenet",
          "--size",
          String(c.size),
          ...(c.vit_blocks ? ["--vit-blocks", String(c.vit_blocks)] : []),
        ];
        const r = await embedCli([...args, "--resize", String(c.resize), "--out", out, groegerImagePath(c)]);
        assert.equal(r.code, 0, r.stderr);
        const { shape, data } = decodeNpyFloat32(await Deno.readFile(out));
        const ref = readGroegerReference(c.name);
        const want = ref.tensors.get("embedding_f64")!.data;
        assert.deepEqual(shape, [1, want.length]);
        const error = relativeMaxError(data, want);
        const bound = groegerBound(ref.metadata);
        console.log(
          `${c.name} via CLI: relative error ${error.toExponential(2)} (bound ${bound.toExponential(2)})`,
        );
        assert.ok(error <= bound, `${c.name}: ${error} over ${bound}`);
        const facts = JSON.parse(await Deno.readTextFile(`${out}.json`));
        assert.equal(facts.preset, "imagenet");
      });
    },
  });
}

Deno.test("embed CLI: rows follow the input order and match embedding each image alone", async () => {
  const c = fixtureCases().find((x) => x.name === "tiny-derm-96")!;
  const images = fixtureCases().filter((x) => x.name.startsWith("tiny-derm-96")).map(caseImagePath)
    .reverse();
  await withTempDir(async (dir) => {
    const common = ["--weights", (await caseWeightsPath(c))!, "--size", "96"];
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

Deno.test("embed CLI: a DINO checkpoint embeds its teacher with --vit-heads; without, it says to pass it", async () => {
  const c = groegerCases().find((x) => x.name === "tiny-vit-64")!;
  await withTempDir(async (dir) => {
    const out = `${dir}/e.npy`;
    const pth = testdataPath(`groeger/${c.name}.pth`);
    const common = ["--weights", pth, "--size", String(c.size), "--resize", String(c.resize)];
    const missing = await embedCli([...common, "--out", out, groegerImagePath(c)]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /tiny-vit-64\.pth.*cannot tell the attention heads.*pass --vit-heads/);
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
    const r = await embedCli([
      ...common,
      "--vit-heads",
      String(c.heads),
      "--vit-blocks",
      "2",
      "--out",
      out,
      groegerImagePath(c),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const { data } = decodeNpyFloat32(await Deno.readFile(out));
    const ref = readGroegerReference(c.name);
    const error = relativeMaxError(data, ref.tensors.get("embedding_f64")!.data);
    console.log(`${c.name}.pth via CLI: relative error ${error.toExponential(2)}`);
    assert.ok(error <= groegerBound(ref.metadata), `${error}`);
    const facts = JSON.parse(await Deno.readTextFile(`${out}.json`));
    assert.match(facts.architecture, /^ViT dim 48 depth 3 heads 3/);
  });
});
