import assert from "node:assert/strict";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose } from "../tests/_compare.ts";
import { randomFloats } from "../tests/_random.ts";
import type { LaunchLimits } from "../engine/kernel.ts";
import { runKernelOnce } from "./_harness.ts";
import {
  WEIGHT_STANDARDIZE_SPECS,
  type WeightDtype,
  weightStandardizeLaunch,
  type WeightStandardizeShape,
  weightStandardizeSizes,
} from "./weight_standardize.ts";
import { weightStandardizeRef } from "./weight_standardize_ref.ts";
import { type Dtype, float32ToFloat16Bits } from "../engine/precision.ts";
import { f16GpuTest, f16Tolerance, loaded } from "../tests/_f16.ts";

/** Encodes values as `dtype` bytes; returns the bytes and the values they decode to. */
function encode(values: Float64Array, dtype: WeightDtype): { bytes: Uint8Array; decoded: Float64Array } {
  if (dtype === "F32") {
    const f = Float32Array.from(values);
    return { bytes: new Uint8Array(f.buffer), decoded: Float64Array.from(f) };
  }
  if (dtype === "F16") {
    const h = Float16Array.from(values);
    return { bytes: new Uint8Array(h.buffer), decoded: Float64Array.from(h) };
  }
  const bits = new Uint32Array(Float32Array.from(values).buffer);
  const b = new Uint16Array(values.length);
  const one = new Uint32Array(1);
  const oneF = new Float32Array(one.buffer);
  const decoded = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    b[i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16; // round to nearest even
    one[0] = b[i] << 16;
    decoded[i] = oneF[0];
  }
  return { bytes: new Uint8Array(b.buffer), decoded };
}

const base = { cinPadded: 0, dtype: "F32", layout: "OIHW", eps: 1e-10 } as const;

/** Runs the flavour writing `resident` on the values; checks it against the reference; returns its output. */
async function check(
  device: GPUDevice,
  shape: WeightStandardizeShape,
  values: Float64Array,
  options: { abs?: number; limits?: LaunchLimits; resident?: Dtype } = {},
): Promise<Float32Array> {
  const resident = options.resident ?? "f32";
  const { bytes, decoded } = encode(values, shape.dtype);
  const sizes = weightStandardizeSizes(shape, resident);
  assert.equal(bytes.byteLength, sizes.rawBytes);
  const [out] = await runKernelOnce(
    device,
    WEIGHT_STANDARDIZE_SPECS[resident],
    weightStandardizeLaunch(shape, options.limits),
    [
      bytes,
      { bytes: sizes.wBytes },
    ],
  );
  const elements = shape.kh * shape.kw * shape.cinPadded * shape.cout;
  const got = loaded(out, resident, elements);
  const want = weightStandardizeRef(decoded, shape);
  // f32: 2e-6; f16 adds one store (f16Tolerance; the store is to nearest even, checked bit for bit below).
  const tol = { abs: options.abs ?? 2e-6, rel: 2e-6 };
  assertClose(got, want, {
    ...(resident === "f16" ? f16Tolerance(tol) : tol),
    shape: [shape.kh, shape.kw, shape.cinPadded, shape.cout],
    what: `${WEIGHT_STANDARDIZE_SPECS[resident].name} ${JSON.stringify(shape)}`,
  });
  // Padded input channels are exact zeros.
  for (let i = 0; i < got.length; i++) {
    if (Math.floor(i / shape.cout) % shape.cinPadded >= shape.cin) assert.equal(got[i], 0);
  }
  return got;
}

/**
 * The f16 flavour against the reference, and bit for bit against the f32 flavour's output rounded to
 * nearest even on the CPU (both compute the same f32 values; only the store differs).
 */
async function checkF16(
  device: GPUDevice,
  shape: WeightStandardizeShape,
  values: Float64Array,
  options: { limits?: LaunchLimits } = {},
) {
  const f32 = await check(device, shape, values, options);
  const f16 = await check(device, shape, values, { ...options, resident: "f16" });
  let ties = 0;
  for (let i = 0; i < f32.length; i++) {
    const want = float32ToFloat16Bits(f32[i]);
    const got = float32ToFloat16Bits(f16[i]); // exact: f16[i] is an f16 value
    if (got !== want) assert.fail(`element ${i}: f16 bits ${got}, f32 ${f32[i]} rounds to ${want}`);
    if ((new Uint32Array(new Float32Array([f32[i]]).buffer)[0] & 0x1fff) === 0x1000) ties++;
  }
  return ties;
}

Deno.test("weightStandardizeLaunch() packs uniforms in struct order", () => {
  const launch = weightStandardizeLaunch({
    cout: 192,
    cin: 3,
    kh: 7,
    kw: 7,
    cinPadded: 4,
    dtype: "BF16",
    layout: "HWIO",
    eps: 1e-8,
  });
  assert.deepEqual(launch.workgroups, [192 / 16, 1, 1]);
  assert.equal(launch.uniforms.byteLength, 32);
  const v = new DataView(launch.uniforms.buffer);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((i) => v.getUint32(i * 4, true)), [192, 3, 7, 7, 4, 2, 1]);
  assert.equal(v.getFloat32(28, true), Math.fround(1e-8));
});

Deno.test("weightStandardizeLaunch() folds output channels over x and y past the workgroup limit", () => {
  const shape = { ...base, cout: 6144, cin: 1536, kh: 1, kw: 1, cinPadded: 1536 };
  assert.deepEqual(weightStandardizeLaunch(shape).workgroups, [6144 / 16, 1, 1]);
  const [x, y, z] = weightStandardizeLaunch(shape, { maxComputeWorkgroupsPerDimension: 100 }).workgroups;
  assert.ok(x <= 100 && y > 1 && y <= 100 && z === 1 && x * y >= 6144 / 16);
});

Deno.test("weightStandardizeLaunch() rejects bad shapes naming the kernel", () => {
  assert.throws(
    () => weightStandardizeLaunch({ ...base, cout: 4, cin: 3, kh: 1, kw: 1, cinPadded: 2 }),
    {
      name: "TypeError",
      message: "Cannot launch weight_standardize: expected cinPadded >= cin, got cinPadded 2, cin 3",
    },
  );
  assert.throws(
    () => weightStandardizeLaunch({ ...base, cout: 0, cin: 3, kh: 1, kw: 1, cinPadded: 3 }),
    /expected cout to be a positive integer, got 0/,
  );
  assert.throws(
    () =>
      weightStandardizeLaunch({ ...base, cout: 1, cin: 3, kh: 1, kw: 1, cinPadded: 3, dtype: "I8" as "F32" }),
    /expected dtype F32, F16 or BF16, got "I8"/,
  );
  assert.throws(
    () => weightStandardizeLaunch({ ...base, cout: 1, cin: 3, kh: 1, kw: 1, cinPadded: 3, eps: -1 }),
    RangeError,
  );
});

Deno.test("weightStandardizeRef() standardises a hand-computed OIHW kernel", () => {
  // Cout 2, Cin 1, 1x2: channel 0 = [1, 3] (mean 2, var 1), channel 1 = [5, 5] (var 0).
  const got = weightStandardizeRef(new Float64Array([1, 3, 5, 5]), {
    cout: 2,
    cin: 1,
    kh: 1,
    kw: 2,
    cinPadded: 2,
    dtype: "F32",
    layout: "OIHW",
    eps: 0.25,
  });
  const s = 1 / Math.sqrt(1.25);
  // HWIO [1,2,2,2]: (x=0,i=0) [-s, 0], (x=0,i=1) [0, 0], (x=1,i=0) [s, 0], (x=1,i=1) [0, 0]
  assertClose(got, [-s, 0, 0, 0, s, 0, 0, 0], { abs: 1e-15, rel: 0 });
});

for (const dtype of ["F32", "F16", "BF16"] as const) {
  for (const layout of ["OIHW", "HWIO"] as const) {
    gpuTest(
      `weightStandardize() matches reference for ${dtype} ${layout} with odd counts and Cin padding`,
      async (gpu) => {
        // 5 x 3 x 3 x 3 = 135 elements: odd, so the last 16-bit word is half used.
        const stem = { cout: 5, cin: 3, kh: 3, kw: 3, cinPadded: 4, dtype, layout, eps: 1e-10 };
        await check(gpu.device, stem, randomFloats(135, 11, -0.5, 0.7));
        // 1x1 with Cin 13, Cout 7 (odd), fan-in smaller than the workgroup; folded dispatch [4, 2, 1] with
        // one idle workgroup.
        const oneByOne = { cout: 7, cin: 13, kh: 1, kw: 1, cinPadded: 13, dtype, layout, eps: 1e-8 };
        await check(gpu.device, oneByOne, randomFloats(91, 12), {
          limits: { maxComputeWorkgroupsPerDimension: 4 },
        });
      },
    );
  }
}

gpuTest("weightStandardize() keeps float64 accuracy at the largest fan-in (3x3x1536)", async (gpu) => {
  const shape = {
    cout: 3,
    cin: 1536,
    kh: 3,
    kw: 3,
    cinPadded: 1536,
    dtype: "F32",
    layout: "HWIO",
    eps: 1e-10,
  } as const;
  // Channels with a mean far from zero relative to their spread, where E[x^2] - E[x]^2 would cancel.
  const values = randomFloats(3 * 13824, 21, 0.3, 1.3);
  await check(gpu.device, shape, values);
});

gpuTest("weightStandardize() decodes F16 subnormals and gives zeros for an all-zero channel", async (gpu) => {
  const shape = {
    cout: 3,
    cin: 5,
    kh: 3,
    kw: 3,
    cinPadded: 8,
    dtype: "F16",
    layout: "OIHW",
    eps: 1e-10,
  } as const;
  const values = randomFloats(135, 31, -1e-4, 1e-4); // f16 subnormals are below 6.1e-5
  values.fill(0, 45, 90); // output channel 1
  await check(gpu.device, shape, values);
});

// ---------- the f16 flavour: the same f32 arithmetic, stored as f16 rounded to nearest even ----------

f16GpuTest(
  "weightStandardize() f16 flavour rounds each f32 result to nearest even, on every test shape",
  async (gpu) => {
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      for (const layout of ["OIHW", "HWIO"] as const) {
        const stem = { cout: 5, cin: 3, kh: 3, kw: 3, cinPadded: 4, dtype, layout, eps: 1e-10 };
        await checkF16(gpu.device, stem, randomFloats(135, 11, -0.5, 0.7)); // 180 outputs
        const oneByOne = { cout: 7, cin: 13, kh: 1, kw: 1, cinPadded: 13, dtype, layout, eps: 1e-8 };
        // 91 outputs: an odd count of f16 in a padded buffer
        await checkF16(gpu.device, oneByOne, randomFloats(91, 12), {
          limits: { maxComputeWorkgroupsPerDimension: 4 },
        });
      }
    }
    const large = {
      cout: 3,
      cin: 1536,
      kh: 3,
      kw: 3,
      cinPadded: 1536,
      dtype: "F32",
      layout: "HWIO",
      eps: 1e-10,
    } as const;
    await checkF16(gpu.device, large, randomFloats(3 * 13824, 21, 0.3, 1.3));
    // Tiny values standardise to ordinary ones; an all-zero channel stays exactly zero.
    const values = randomFloats(135, 31, -1e-4, 1e-4);
    values.fill(0, 45, 90);
    await checkF16(gpu.device, {
      cout: 3,
      cin: 5,
      kh: 3,
      kw: 3,
      cinPadded: 8,
      dtype: "F16",
      layout: "OIHW",
      eps: 1e-10,
    }, values);
  },
  [WEIGHT_STANDARDIZE_SPECS.f16],
);

f16GpuTest("weightStandardize() f16 flavour rounds exact ties to even, subnormal ones too", async (gpu) => {
  // A channel [t, -t] has mean 0 and variance t^2, both exact in f32; with eps = 1 - t^2 (exact too) the
  // scale is 1/sqrt(1) and w' = +-t exactly. t is a tie halfway between two f16 values: 1 - 3 * 2^-12
  // (between 1 - 2^-10, even, and 1 - 2^-11) and 3 * 2^-25 (between the subnormals 2^-24 and 2^-23, even;
  // eps rounds to 1 there).
  for (const t of [1 - 3 * 2 ** -12, 3 * 2 ** -25]) {
    const shape = {
      cout: 1,
      cin: 2,
      kh: 1,
      kw: 1,
      cinPadded: 2,
      dtype: "F32",
      layout: "OIHW",
      eps: Math.fround(1 - t * t),
    } as const;
    const raw = new Uint8Array(new Float32Array([t, -t]).buffer);
    const [f32] = await runKernelOnce(
      gpu.device,
      WEIGHT_STANDARDIZE_SPECS.f32,
      weightStandardizeLaunch(shape),
      [
        raw,
        { bytes: 8 },
      ],
    );
    assert.deepEqual([...new Float32Array(f32)], [t, -t], "the f32 results are not the exact tie");
    const [f16] = await runKernelOnce(
      gpu.device,
      WEIGHT_STANDARDIZE_SPECS.f16,
      weightStandardizeLaunch(shape),
      [
        raw,
        { bytes: 4 },
      ],
    );
    const even = t < 1e-6 ? 0x0002 : 0x3bfe; // 2^-23 and 1 - 2^-10
    assert.deepEqual([...new Uint16Array(f16)], [even, 0x8000 | even], `tie ${t}`);
    assert.deepEqual([float32ToFloat16Bits(t), float32ToFloat16Bits(-t)], [even, 0x8000 | even]);
  }
}, [WEIGHT_STANDARDIZE_SPECS.f16]);
