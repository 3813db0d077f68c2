/**
 * A model's resident weights computed on the CPU, for the peers: the model definition's own recipes
 * replayed on the stored tensors, so ONNX Runtime and TF.js compute the same function as the engine.
 * - A CPU transform runs as it is (ResNet's BatchNorm folded into the conv kernel and a bias, in float64,
 *   exactly the engine's code).
 * - A GPU transform runs through its kernel's float64 reference, found by the kernel's name in
 *   {@linkcode GPU_TRANSFORMS_ON_CPU} (BiT's weight standardisation: `weightStandardizeRef`, its shape read
 *   from the launch's uniforms, whose layout the kernel's header documents). The result is rounded to
 *   float32, so it differs from the GPU's f32 result by rounding only.
 * @module
 */
import type { KernelLaunch } from "../engine/kernel.ts";
import type { WeightRecipe } from "../engine/model.ts";
import type { TensorChunk, TensorSource } from "../engine/tensor_source.ts";
import {
  WEIGHT_DTYPE_CODES,
  WEIGHT_LAYOUT_CODES,
  type WeightDtype,
  type WeightLayout,
} from "../kernels/weight_standardize.ts";
import { weightStandardizeRef } from "../kernels/weight_standardize_ref.ts";
import { decodeToFloat32 } from "../weights/dtypes.ts";

/** The CPU equivalent of a GPU weight transform: the stored chunk and the launch the recipe made for it. */
export type CpuEquivalent = (chunk: TensorChunk, launch: KernelLaunch) => Float32Array;

function keyOf<T extends string>(codes: Readonly<Record<T, number>>, code: number): T {
  const key = (Object.keys(codes) as T[]).find((k) => codes[k] === code);
  if (key === undefined) {
    throw new RangeError(`Cannot decode code ${code}: expected one of ${Object.values(codes)}`);
  }
  return key;
}

/** CPU equivalents of the GPU weight transforms, by kernel name. */
export const GPU_TRANSFORMS_ON_CPU: ReadonlyMap<string, CpuEquivalent> = new Map([
  ["weight_standardize", (chunk: TensorChunk, launch: KernelLaunch) => {
    // uniforms {cout, cin, kh, kw, cinPadded, dtype, layout: u32; eps: f32}
    const u = new DataView(launch.uniforms.buffer, launch.uniforms.byteOffset, launch.uniforms.byteLength);
    const word = (i: number) => u.getUint32(4 * i, true);
    const shape = {
      cout: word(0),
      cin: word(1),
      kh: word(2),
      kw: word(3),
      cinPadded: word(4),
      dtype: keyOf<WeightDtype>(WEIGHT_DTYPE_CODES, word(5)),
      layout: keyOf<WeightLayout>(WEIGHT_LAYOUT_CODES, word(6)),
      eps: u.getFloat32(28, true),
    };
    return Float32Array.from(
      weightStandardizeRef(Float64Array.from(decodeToFloat32(chunk.entry, chunk.bytes)), shape),
    );
  }],
]);

/**
 * Replays `recipes` on the tensors of `source` on the CPU.
 *
 * @param source The stored weights (streamed once; not closed here).
 * @param recipes The model definition's recipes.
 * @returns Graph weight name → values in the layout the kernels read.
 * @throws {TypeError} For a GPU transform without a CPU equivalent.
 */
export async function cpuResidentWeights(
  source: TensorSource,
  recipes: readonly WeightRecipe[],
): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  const waiting = new Map<string, number[]>();
  recipes.forEach((r, i) => {
    if (r.transform.kind === "gpu" && !GPU_TRANSFORMS_ON_CPU.has(r.transform.specs.f32.name)) {
      throw new TypeError(
        `Cannot compute "${
          r.outputs[0]
        }" on the CPU: no equivalent of kernel "${r.transform.specs.f32.name}"`,
      );
    }
    for (const s of r.sources) waiting.set(s, [...(waiting.get(s) ?? []), i]);
  });
  const held = recipes.map(() => new Map<string, TensorChunk>());
  for await (const chunk of source.stream(new Set(waiting.keys()))) {
    for (const i of waiting.get(chunk.entry.name) ?? []) {
      const r = recipes[i];
      held[i].set(chunk.entry.name, chunk);
      if (held[i].size < r.sources.length) continue;
      const chunks = r.sources.map((s) => held[i].get(s)!);
      held[i].clear();
      const t = r.transform;
      const values = t.kind === "cpu"
        ? t.run(chunks)
        : [GPU_TRANSFORMS_ON_CPU.get(t.specs.f32.name)!(chunks[0], t.input(chunks[0]).launch)];
      r.outputs.forEach((name, k) => out.set(name, values[k]));
    }
  }
  return out;
}
