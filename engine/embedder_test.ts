/**
 * The embedder runtime's contract beyond numerics, on the tiny BiT and ResNet models: plan once and run
 * many, and clear errors for bad images, bad weights, non-finite results, a lost device and batches that
 * do not fit.
 */
import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { createBitEmbedder, createEmbedder } from "../models/registry.ts";
import { bitArchitecture } from "../models/bit_arch.ts";
import { bitProceduralSource } from "../models/bit_names.ts";
import { encodeSafetensors, type TensorToWrite } from "../weights/safetensors_write.ts";
import { acquireGpu, type Gpu } from "./device.ts";
import { DeviceLostError, ImageError, NonFiniteError, WeightsError } from "./errors.ts";
import { CONV2D_VARIANT_NAMES } from "../kernels/registry.ts";
import { relativeMaxError } from "../tests/_compare.ts";

const TINY = bitArchitecture([1, 1, 1, 1], [128, 256, 512, 1024], 32);
const SIZE = 64;

/** The tiny model's procedural weights as a safetensors file, after `edit` (drop or change tensors). */
async function tinyWeights(
  edit: (tensors: TensorToWrite[]) => TensorToWrite[] = (t) => t,
): Promise<Uint8Array> {
  const tensors: TensorToWrite[] = [];
  for await (const { entry, bytes } of bitProceduralSource(TINY, "embedder-test").stream()) {
    tensors.push({ name: entry.name, dtype: entry.dtype, shape: [...entry.shape], data: bytes.slice() });
  }
  return encodeSafetensors(edit(tensors), { preset: "bit" });
}

function setAll(tensors: TensorToWrite[], name: string, value: number): TensorToWrite[] {
  return tensors.map((t) => {
    if (t.name !== name) return t;
    const data = new Float32Array(new Uint8Array(t.data as Uint8Array).buffer).fill(value);
    return { ...t, data };
  });
}

/** A Gpu whose device counts `create*` calls. */
function countingGpu(gpu: Gpu): { gpu: Gpu; counts: Map<string, number> } {
  const counts = new Map<string, number>();
  const device = new Proxy(gpu.device, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (String(prop).startsWith("create")) counts.set(String(prop), (counts.get(String(prop)) ?? 0) + 1);
        return value.apply(target, args);
      };
    },
  });
  return { gpu: { ...gpu, device }, counts };
}

const IMAGE = Deno.readFileSync(new URL("../samples/ISIC_0000101.jpg", import.meta.url));
const IMAGE2 = Deno.readFileSync(new URL("../samples/ISIC_0000140.jpg", import.meta.url));

gpuTest("embed() creates no GPU objects but one command encoder once its plan exists", async (shared) => {
  const { gpu, counts } = countingGpu(shared);
  const embedder = await createBitEmbedder(await tinyWeights(), { gpu, size: SIZE, maxBatch: 2 });
  try {
    const first = await embedder.embed([IMAGE, IMAGE2]);
    counts.clear();
    const second = await embedder.embed([IMAGE2, IMAGE]);
    assert.deepEqual([...counts], [["createCommandEncoder", 1]]);
    assert.deepEqual(second, [first[1], first[0]]);
  } finally {
    embedder.dispose();
  }
});

gpuTest("embed() names the image it cannot decode", async (gpu) => {
  const embedder = await createBitEmbedder(await tinyWeights(), { gpu, size: SIZE });
  try {
    const truncated = IMAGE.slice(0, 600);
    const error = await embedder.embed([{ bytes: truncated, name: "cut.jpg" }]).then(() => null, (e) => e);
    assert.ok(error instanceof ImageError, `${error}`);
    assert.equal(error.file, "cut.jpg");
    assert.match(error.message, /cut\.jpg/);
    const notImage = await embedder.embed([{ bytes: new TextEncoder().encode("hello"), name: "notes.txt" }])
      .then(() => null, (e) => e);
    assert.ok(notImage instanceof ImageError);
    assert.match(notImage.message, /notes\.txt.*unsupported format/);
    // The embedder still works after a bad image.
    assert.equal((await embedder.embed([IMAGE]))[0].length, 1024);
  } finally {
    embedder.dispose();
  }
});

gpuTest("createBitEmbedder() names a missing tensor", async (gpu) => {
  const bytes = await tinyWeights((t) => t.filter((x) => x.name !== "stages.2.blocks.0.conv2.weight"));
  const error = await createBitEmbedder(bytes, { gpu, size: SIZE }).then(() => null, (e) => e);
  assert.ok(error instanceof WeightsError, `${error}`);
  assert.equal(error.tensor, "stages.2.blocks.0.conv2.weight");
});

gpuTest("createBitEmbedder() names a convolution or norm tensor holding NaN", async (gpu) => {
  for (const name of ["stages.1.blocks.0.conv1.weight", "stages.3.blocks.0.norm2.bias"]) {
    const bytes = await tinyWeights((t) => setAll(t, name, NaN));
    const error = await createBitEmbedder(bytes, { gpu, size: SIZE }).then(() => null, (e) => e);
    assert.ok(error instanceof WeightsError, `${name}: ${error}`);
    assert.equal(error.tensor, name);
    assert.match(error.message, /NaN/);
  }
});

gpuTest("createBitEmbedder() rejects truncated weights naming the file", async (gpu) => {
  const bytes = await tinyWeights();
  const error = await createBitEmbedder(bytes.slice(0, bytes.length - 1000), { gpu, size: SIZE })
    .then(() => null, (e) => e);
  assert.ok(error instanceof WeightsError, `${error}`);
  assert.match(error.message, /<bytes>/);
});

gpuTest(
  "embed() reports a non-finite embedding as an error, never as a row, naming the layer on request",
  async (gpu) => {
    // A huge final GroupNorm scale overflows float32.
    const bytes = await tinyWeights((t) => setAll(t, "norm.weight", 3e38));
    const embedder = await createBitEmbedder(bytes, { gpu, size: SIZE });
    try {
      const error = await embedder.embed([IMAGE]).then(() => null, (e) => e);
      assert.ok(error instanceof NonFiniteError, `${error}`);
      assert.equal(error.image, 0);
      assert.equal(error.layer, "");
    } finally {
      embedder.dispose();
    }
    const locating = await createBitEmbedder(bytes, { gpu, size: SIZE, maxBatch: 2, locateNonFinite: true });
    try {
      const error = await locating.embed([IMAGE, IMAGE2]).then(() => null, (e) => e);
      assert.ok(error instanceof NonFiniteError, `${error}`);
      assert.equal(error.layer, "final_norm");
      assert.match(error.message, /first non-finite output: final_norm/);
      assert.deepEqual(await locating.firstNonFiniteLayers([IMAGE2]), ["final_norm"]);
    } finally {
      locating.dispose();
    }
    // With sound weights, no layer is named.
    const sound = await createBitEmbedder(await tinyWeights(), { gpu, size: SIZE });
    try {
      assert.deepEqual(await sound.firstNonFiniteLayers([IMAGE, IMAGE2]), ["", ""]);
    } finally {
      sound.dispose();
    }
  },
);

gpuTest("createBitEmbedder() refuses a batch over the storage-binding limit, naming it", async (gpu) => {
  const error = await createBitEmbedder(await tinyWeights(), { gpu, size: 1024, maxBatch: 64 })
    .then(() => null, (e) => e);
  assert.ok(error instanceof RangeError, `${error}`);
  assert.match(error.message, /maxStorageBufferBindingSize/);
});

gpuTest("embed() fails with DeviceLostError after the device is lost", async () => {
  const gpu = await acquireGpu();
  const embedder = await createBitEmbedder(await tinyWeights(), { gpu, size: SIZE });
  await embedder.embed([IMAGE]);
  gpu.device.destroy();
  await gpu.lost;
  const error = await embedder.embed([IMAGE]).then(() => null, (e) => e);
  assert.ok(error instanceof DeviceLostError, `${error}`);
  embedder.dispose();
});

gpuTest("createBitEmbedder() loads the same weights from bytes, a stream, a URL and a path", async (gpu) => {
  const bytes = await tinyWeights();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(bytes.slice()),
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/w.safetensors`, bytes);
    const inputs = [
      bytes,
      new Blob([bytes.slice()]).stream(),
      new URL(`http://127.0.0.1:${server.addr.port}/w.safetensors`),
      `${dir}/w.safetensors`,
    ];
    let want: Float32Array | undefined;
    for (const input of inputs) {
      const embedder = await createBitEmbedder(input, { gpu, size: SIZE });
      try {
        const [row] = await embedder.embed([IMAGE]);
        want ??= row;
        assert.deepEqual(row, want);
      } finally {
        embedder.dispose();
      }
    }
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("every convolution variant gives the same embedding within float32 noise", async (gpu) => {
  const bytes = await tinyWeights();
  let want: Float32Array | undefined;
  for (const variant of CONV2D_VARIANT_NAMES) {
    const embedder = await createBitEmbedder(bytes, { gpu, size: SIZE, kernels: [variant] });
    try {
      const [row] = await embedder.embed([IMAGE]);
      want ??= row;
      assert.ok(relativeMaxError(row, want) < 1e-5, `${variant}: ${relativeMaxError(row, want)}`);
    } finally {
      embedder.dispose();
    }
  }
  await assert.rejects(
    createEmbedder(bytes, { gpu, size: SIZE, kernels: ["conv2d_magic"] }),
    /Cannot force kernel "conv2d_magic": expected one of .*conv2d_tiled/,
  );
});

gpuTest(
  "embed() with batches in flight gives the rows of one batch at a time, also for concurrent calls",
  async (gpu) => {
    const images = [IMAGE, IMAGE2, IMAGE, IMAGE2, IMAGE];
    const one = await createEmbedder("procedural:tiny-resnet:flight", {
      gpu,
      size: 64,
      maxBatch: 2,
      inFlight: 1,
    });
    let want: Float32Array[];
    try {
      want = await one.embed(images);
    } finally {
      one.dispose();
    }
    const many = await createEmbedder("procedural:tiny-resnet:flight", {
      gpu,
      size: 64,
      maxBatch: 2,
      inFlight: 3,
    });
    try {
      assert.equal(many.model.family, "resnet");
      assert.deepEqual(await many.embed(images), want);
      // Two callers at once: each gets its own rows, in its own order.
      const [a, b] = await Promise.all([many.embed(images), many.embed([...images].reverse())]);
      assert.deepEqual(a, want);
      assert.deepEqual(b, [...want].reverse());
    } finally {
      many.dispose();
    }
    await assert.rejects(
      createEmbedder("procedural:tiny-resnet", { gpu, size: 64, inFlight: 0 }),
      RangeError,
    );
  },
);
