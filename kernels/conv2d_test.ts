import assert from "node:assert/strict";
import { DEFAULT_LAUNCH_LIMITS, type KernelSpec } from "../engine/kernel.ts";
import { runKernelOnce } from "./_harness.ts";
import {
  CONV2D_CHUNK,
  CONV2D_TILED_CHANNELS,
  CONV2D_TILED_PIXELS,
  CONV2D_WORKGROUP_SIZE,
  conv2dDirect,
  conv2dFlavours,
  conv2dLaunch,
  conv2dOutputSize,
  conv2dPixelLanes,
  type Conv2dShape,
  conv2dTiled,
  conv2dVariants,
} from "./conv2d.ts";
import { conv2dRef } from "./conv2d_ref.ts";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose, relativeMaxError } from "../tests/_compare.ts";
import { randomF32AsF64, randomFloats } from "../tests/_random.ts";
import { f16GpuTest, f16Tolerance, loaded, roundTo, stored } from "../tests/_f16.ts";
import { FLAVOURS, type StorageTypes } from "./_precision.ts";

function shapeOf(p: Partial<Conv2dShape> & { kh: number; stride: number; pad: number }): Conv2dShape {
  return { n: 1, h: 7, w: 9, cin: 8, cout: 12, kw: p.kh, accumulate: false, ...p };
}

/** `conv2d_tiled` -> `conv2dTiled`, for test names. */
function camel(spec: KernelSpec): string {
  return spec.name.replace(/_(\w)/g, (_, c: string) => c.toUpperCase());
}

// ---------- pure tests: reference, output size, launch ----------

Deno.test("conv2dRef() matches a hand-computed 3x3 case with padding and a residual", () => {
  // x: 1x2x2x1 = [[1,2],[3,4]]; w: 3x3x1x1 all ones except centre 2; pad 1 stride 1
  const x = new Float64Array([1, 2, 3, 4]);
  const w = new Float64Array([1, 1, 1, 1, 2, 1, 1, 1, 1]);
  const shape: Conv2dShape = {
    n: 1,
    h: 2,
    w: 2,
    cin: 1,
    cout: 1,
    kh: 3,
    kw: 3,
    stride: 1,
    pad: 1,
    accumulate: true,
  };
  // every output sees all four inputs (sum 10) once, plus its own centre once more
  const y = conv2dRef(x, w, shape, new Float64Array([100, 200, 300, 400]));
  assert.deepEqual([...y], [111, 212, 313, 414]);
});

Deno.test("conv2dRef() matches a hand-computed 1x1 stride 2 case with two channels", () => {
  // x: 1x3x3x2, x[h,w,c] = 10*(3h+w) + c; w: 1x1x2x2 = [[1,2],[3,4]] (ci rows, co columns)
  const x = new Float64Array(18).map((_, i) => 10 * Math.floor(i / 2) + (i % 2));
  const w = new Float64Array([1, 2, 3, 4]);
  const shape: Conv2dShape = {
    n: 1,
    h: 3,
    w: 3,
    cin: 2,
    cout: 2,
    kh: 1,
    kw: 1,
    stride: 2,
    pad: 0,
    accumulate: false,
  };
  const y = conv2dRef(x, w, shape);
  // outputs at (0,0),(0,2),(2,0),(2,2): pixel p has x = [10p, 10p+1] -> [10p + 3(10p+1), 2*10p + 4(10p+1)]
  const want = [0, 2, 6, 8].flatMap((p) => [40 * p + 3, 60 * p + 4]);
  assert.deepEqual([...y], want);
});

Deno.test("conv2dOutputSize() gives the R101x3 sizes", () => {
  assert.equal(conv2dOutputSize(448, 7, 2, 3), 224);
  assert.equal(conv2dOutputSize(112, 3, 2, 1), 56);
  assert.equal(conv2dOutputSize(112, 1, 2, 0), 56);
  assert.equal(conv2dOutputSize(13, 3, 2, 1), 7);
  assert.equal(conv2dOutputSize(28, 3, 1, 1), 28);
});

Deno.test("conv2dLaunch() returns the output shape of each kernel type", () => {
  for (const spec of conv2dVariants) {
    const stem = {
      n: 2,
      h: 448,
      w: 448,
      cin: 4,
      cout: 192,
      kh: 7,
      kw: 7,
      stride: 2,
      pad: 3,
      accumulate: false,
    };
    assert.deepEqual(conv2dLaunch(spec, stem).outShape, [2, 224, 224, 192]);
    assert.deepEqual(conv2dLaunch(spec, shapeOf({ h: 13, w: 11, kh: 3, stride: 2, pad: 1 })).outShape, [
      1,
      7,
      6,
      12,
    ]);
    assert.deepEqual(conv2dLaunch(spec, shapeOf({ kh: 1, stride: 2, pad: 0 })).outShape, [1, 4, 5, 12]);
  }
});

Deno.test("conv2dLaunch() rejects bad shapes with a TypeError naming the problem", () => {
  const good = shapeOf({ kh: 3, stride: 1, pad: 1 });
  assert.throws(
    () => conv2dLaunch(conv2dTiled, { ...good, cin: 3 }),
    { name: "TypeError", message: "Cannot launch conv2d_tiled: expected Cin % 4 == 0, got 3" },
  );
  assert.throws(
    () => conv2dLaunch(conv2dTiled, { ...good, cout: 10 }),
    { name: "TypeError", message: "Cannot launch conv2d_tiled: expected Cout % 4 == 0, got 10" },
  );
  assert.throws(() => conv2dLaunch(conv2dDirect, { ...good, n: 0 }), {
    name: "TypeError",
    message: /n to be/,
  });
  assert.throws(() => conv2dLaunch(conv2dDirect, { ...good, stride: 1.5 }), {
    name: "TypeError",
    message: /stride/,
  });
  assert.throws(() => conv2dLaunch(conv2dDirect, { ...good, pad: -1 }), {
    name: "TypeError",
    message: /pad/,
  });
  assert.throws(() => conv2dLaunch(conv2dDirect, { ...good, h: 2, pad: 0 }), {
    name: "TypeError",
    message: /fit/,
  });
  assert.throws(
    () => conv2dLaunch(conv2dDirect, { ...good, accumulate: 1 as unknown as boolean }),
    { name: "TypeError", message: /accumulate/ },
  );
  assert.throws(
    () => conv2dLaunch({ ...conv2dTiled, name: "gemm" }, good),
    { name: "TypeError", message: /conv2d variant/ },
  );
  // the direct baseline takes any channel counts
  assert.deepEqual(conv2dLaunch(conv2dDirect, { ...good, cin: 3, cout: 10 }).outShape, [1, 7, 9, 10]);
});

Deno.test("conv2dLaunch() folds big-batch dispatches within 65535 workgroups per dimension", () => {
  const max = DEFAULT_LAUNCH_LIMITS.maxComputeWorkgroupsPerDimension;
  const shapes: Conv2dShape[] = [
    { n: 16, h: 448, w: 448, cin: 4, cout: 192, kh: 7, kw: 7, stride: 2, pad: 3, accumulate: false },
    { n: 16, h: 112, w: 112, cin: 192, cout: 768, kh: 1, kw: 1, stride: 1, pad: 0, accumulate: true },
    { n: 16, h: 112, w: 112, cin: 768, cout: 192, kh: 1, kw: 1, stride: 1, pad: 0, accumulate: false },
    { n: 16, h: 112, w: 112, cin: 192, cout: 192, kh: 3, kw: 3, stride: 1, pad: 1, accumulate: false },
    { n: 16, h: 112, w: 112, cin: 384, cout: 384, kh: 3, kw: 3, stride: 2, pad: 1, accumulate: false },
  ];
  let folded = 0;
  for (const spec of conv2dVariants) {
    for (const shape of shapes) {
      const { workgroups, uniforms } = conv2dLaunch(spec, shape);
      assert.ok(workgroups.every((g) => Number.isInteger(g) && g >= 1 && g <= max), `${workgroups}`);
      const units = new DataView(uniforms.buffer).getUint32(13 * 4, true);
      // conv2d_pixel_lanes: a unit is a workgroup; the others: a unit is an invocation
      const needed = spec === conv2dPixelLanes ? units : Math.ceil(units / spec.overrides.WG);
      const total = workgroups[0] * workgroups[1] * workgroups[2];
      assert.ok(total >= needed, `${spec.name}: ${total} workgroups for ${needed}`);
      assert.ok(total - needed < workgroups[1], `${spec.name}: ${total} workgroups for ${needed}`);
      if (workgroups[1] > 1) folded++;
    }
  }
  assert.ok(folded > 0, "no shape needed folding");
  const tooBig = {
    n: 16,
    h: 448,
    w: 448,
    cin: 4,
    cout: 192,
    kh: 7,
    kw: 7,
    stride: 2,
    pad: 3,
    accumulate: false,
  };
  assert.throws(
    () => conv2dLaunch(conv2dDirect, tooBig, { maxComputeWorkgroupsPerDimension: 100 }),
    { name: "RangeError" },
  );
});

Deno.test("conv2dLaunch() packs the uniform struct field by field as u32", () => {
  const shape: Conv2dShape = {
    n: 3,
    h: 13,
    w: 11,
    cin: 8,
    cout: 20,
    kh: 3,
    kw: 3,
    stride: 2,
    pad: 1,
    accumulate: true,
    relu: true,
  };
  const { uniforms } = conv2dLaunch(conv2dTiled, shape);
  assert.equal(uniforms.byteLength, 80);
  const v = new DataView(uniforms.buffer);
  const got = Array.from({ length: 20 }, (_, i) => v.getUint32(i * 4, true));
  const m = 3 * 7 * 6;
  // n h w cin cout kh kw stride pad oh ow accumulate m units cout_tiles has_bias relu _pad0 _pad1 _pad2
  const tiles = Math.ceil(20 / CONV2D_TILED_CHANNELS);
  assert.deepEqual(got, [
    3,
    13,
    11,
    8,
    20,
    3,
    3,
    2,
    1,
    7,
    6,
    1,
    m,
    Math.ceil(m / CONV2D_TILED_PIXELS) * tiles,
    tiles,
    0,
    1,
    0,
    0,
    0,
  ]);
  assert.equal(
    new DataView(conv2dLaunch(conv2dTiled, { ...shape, bias: true }).uniforms.buffer).getUint32(15 * 4, true),
    1,
  );
  const direct = conv2dLaunch(conv2dDirect, { ...shape, accumulate: false }).uniforms;
  const d = new DataView(direct.buffer);
  assert.equal(d.getUint32(11 * 4, true), 0);
  assert.equal(d.getUint32(13 * 4, true), m * 20);
  assert.equal(d.getUint32(14 * 4, true), 20);
});

// ---------- kernel tests: every variant against the reference ----------

interface Case {
  label: string;
  shape: Conv2dShape;
}

const cases: Case[] = [
  {
    label: "7x7 stride 2 pad 3 (stem) with odd H and W",
    shape: { n: 1, h: 13, w: 11, cin: 4, cout: 12, kh: 7, kw: 7, stride: 2, pad: 3, accumulate: false },
  },
  {
    label: "3x3 stride 1 with N = 3, Cout 20 and accumulate",
    shape: { n: 3, h: 7, w: 9, cin: 8, cout: 20, kh: 3, kw: 3, stride: 1, pad: 1, accumulate: true },
  },
  {
    label: "3x3 stride 1 with N = 3, 13x11 (several workgroups) and accumulate",
    shape: { n: 3, h: 13, w: 11, cin: 8, cout: 20, kh: 3, kw: 3, stride: 1, pad: 1, accumulate: true },
  },
  {
    label: "3x3 stride 2 with odd H and W",
    shape: { n: 1, h: 13, w: 11, cin: 12, cout: 12, kh: 3, kw: 3, stride: 2, pad: 1, accumulate: false },
  },
  {
    label: "1x1 stride 1 with N = 3 and Cout 20",
    shape: { n: 3, h: 7, w: 9, cin: 16, cout: 20, kh: 1, kw: 1, stride: 1, pad: 0, accumulate: false },
  },
  {
    label: "1x1 stride 2 with odd H and W and accumulate",
    shape: { n: 1, h: 13, w: 11, cin: 8, cout: 12, kh: 1, kw: 1, stride: 2, pad: 0, accumulate: true },
  },
  {
    label: "3x3 stride 1 with Cin 136 (a partial chunk) and accumulate",
    shape: {
      n: 1,
      h: 5,
      w: 7,
      cin: CONV2D_CHUNK * 2 + 8,
      cout: 36,
      kh: 3,
      kw: 3,
      stride: 1,
      pad: 1,
      accumulate: true,
    },
  },
  {
    label: "1x1 stride 1 with Cin 4 and Cout 4 (smaller than a tile)",
    shape: { n: 1, h: 3, w: 5, cin: 4, cout: 4, kh: 1, kw: 1, stride: 1, pad: 0, accumulate: true },
  },
  {
    label: "7x7 stride 2 with bias and ReLU (a ResNet stem, BatchNorm folded)",
    shape: {
      n: 3,
      h: 13,
      w: 11,
      cin: 4,
      cout: 20,
      kh: 7,
      kw: 7,
      stride: 2,
      pad: 3,
      accumulate: false,
      bias: true,
      relu: true,
    },
  },
  {
    label: "1x1 with bias, accumulate and ReLU after the add (a ResNet block's conv3)",
    shape: {
      n: 1,
      h: 7,
      w: 9,
      cin: 12,
      cout: 28,
      kh: 1,
      kw: 1,
      stride: 1,
      pad: 0,
      accumulate: true,
      bias: true,
      relu: true,
    },
  },
  {
    label: "3x3 stride 2 with bias only",
    shape: {
      n: 1,
      h: 9,
      w: 7,
      cin: 8,
      cout: 12,
      kh: 3,
      kw: 3,
      stride: 2,
      pad: 1,
      accumulate: false,
      bias: true,
    },
  },
];

async function runConv(
  device: GPUDevice,
  spec: KernelSpec,
  shape: Conv2dShape,
  x: Float64Array,
  w: Float64Array,
  residual?: Float64Array,
  bias?: Float64Array,
  types: StorageTypes = FLAVOURS.f32,
): Promise<Float32Array> {
  const launch = conv2dLaunch(spec, shape, device.limits);
  const [n, oh, ow, cout] = launch.outShape;
  const outputs = n * oh * ow * cout;
  const y = residual ? stored(residual, types.output) : { bytes: outputs * (types.output === "f16" ? 2 : 4) };
  // Without a bias the binding is still there, unread: a small buffer of garbage proves it is not read.
  const b = bias ? stored(bias, types.weights) : stored(new Float32Array(4).fill(1e4), types.weights);
  const [out] = await runKernelOnce(device, spec, launch, [
    stored(x, types.input),
    stored(w, types.weights),
    b,
    y,
  ]);
  return loaded(out, types.output, outputs);
}

Deno.test("conv2d kernel cases include a dispatch with a tail", () => {
  const tails = cases.filter(({ shape }) => {
    const units = new DataView(conv2dLaunch(conv2dTiled, shape).uniforms.buffer).getUint32(13 * 4, true);
    return units % CONV2D_WORKGROUP_SIZE !== 0;
  });
  assert.ok(tails.length >= 3);
});

for (const spec of conv2dVariants) {
  for (const [i, { label, shape }] of cases.entries()) {
    gpuTest(`${camel(spec)} matches conv2dRef for ${label}`, async ({ device }) => {
      const x = randomF32AsF64(shape.n * shape.h * shape.w * shape.cin, 100 + i);
      const w = randomF32AsF64(shape.kh * shape.kw * shape.cin * shape.cout, 200 + i);
      const [n, oh, ow, cout] = conv2dLaunch(spec, shape).outShape;
      const residual = shape.accumulate ? randomF32AsF64(n * oh * ow * cout, 300 + i) : undefined;
      const bias = shape.bias ? randomF32AsF64(cout, 400 + i) : undefined;
      const want = conv2dRef(x, w, shape, residual, bias);
      const got = await runConv(device, spec, shape, x, w, residual, bias);
      assertClose(got, want, {
        abs: 1e-5,
        rel: 1e-5,
        shape: [n, oh, ow, cout],
        what: `${spec.name} ${label}`,
      });
    });
  }
}

// ---------- f16 flavours: every variant against the reference, inputs f16 holds exactly ----------

// Inputs are rounded to each binding's dtype first, so the float64 reference sees what the kernel reads; the
// sums are f32 as in the f32 flavour (its tolerance, 1e-5), then one f16 store (f16Tolerance adds one ulp,
// 2^-10 relative, and f16's subnormal spacing). The f32to16 flavour reads an f32 x (the model input) and
// f32 weights.
for (const flavour of ["f16", "f32to16"] as const) {
  const types = FLAVOURS[flavour];
  for (const spec of conv2dFlavours[flavour]) {
    for (const [i, { label, shape }] of cases.entries()) {
      f16GpuTest(`${camel(spec)} matches conv2dRef for ${label}`, async ({ device }) => {
        const x = roundTo(randomFloats(shape.n * shape.h * shape.w * shape.cin, 100 + i), types.input);
        const w = roundTo(randomFloats(shape.kh * shape.kw * shape.cin * shape.cout, 200 + i), types.weights);
        const [n, oh, ow, cout] = conv2dLaunch(spec, shape).outShape;
        const residual = shape.accumulate
          ? roundTo(randomFloats(n * oh * ow * cout, 300 + i), "f16")
          : undefined;
        const bias = shape.bias ? roundTo(randomFloats(cout, 400 + i), types.weights) : undefined;
        const want = conv2dRef(x, w, shape, residual, bias);
        const got = await runConv(device, spec, shape, x, w, residual, bias, types);
        assertClose(got, want, {
          ...f16Tolerance({ abs: 1e-5, rel: 1e-5 }),
          shape: [n, oh, ow, cout],
          what: `${spec.name} ${label}`,
        });
      }, [spec]);
    }
  }
}

// ---------- accuracy over a long K ----------

/** What one sequential f32 fma-free chain per output gets: the naive baseline (rounded after every op). */
function naiveF32(x: Float64Array, w: Float64Array, s: Conv2dShape): Float64Array {
  const oh = conv2dOutputSize(s.h, s.kh, s.stride, s.pad);
  const ow = conv2dOutputSize(s.w, s.kw, s.stride, s.pad);
  const y = new Float64Array(s.n * oh * ow * s.cout);
  const f = Math.fround;
  for (let b = 0; b < s.n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        for (let co = 0; co < s.cout; co++) {
          let acc = 0;
          for (let ky = 0; ky < s.kh; ky++) {
            const iy = oy * s.stride - s.pad + ky;
            if (iy < 0 || iy >= s.h) continue;
            for (let kx = 0; kx < s.kw; kx++) {
              const ix = ox * s.stride - s.pad + kx;
              if (ix < 0 || ix >= s.w) continue;
              for (let ci = 0; ci < s.cin; ci++) {
                const xv = x[((b * s.h + iy) * s.w + ix) * s.cin + ci];
                acc = f(acc + f(xv * w[((ky * s.kw + kx) * s.cin + ci) * s.cout + co]));
              }
            }
          }
          y[((b * oh + oy) * ow + ox) * s.cout + co] = acc;
        }
      }
    }
  }
  return y;
}

// 3x3, Cin 1536: K = 13,824 terms per output, stage 4's 3x3. Inputs positive-biased so the sum grows and the
// rounding of a single chain shows.
const longK: Conv2dShape = {
  n: 1,
  h: 3,
  w: 3,
  cin: 1536,
  cout: 8,
  kh: 3,
  kw: 3,
  stride: 1,
  pad: 1,
  accumulate: false,
};
const longX = randomF32AsF64(9 * 1536, 7, -0.2, 1);
const longW = randomF32AsF64(9 * 1536 * 8, 8, -0.2, 1);
let naiveLongK: number | undefined;

for (const spec of conv2dVariants) {
  gpuTest(
    `${camel(spec)} is more accurate than one f32 chain for 3x3 Cin 1536 (K = 13824)`,
    async ({ device }) => {
      const want = conv2dRef(longX, longW, longK);
      naiveLongK ??= relativeMaxError(naiveF32(longX, longW, longK), want);
      const got = await runConv(device, spec, longK, longX, longW);
      const err = relativeMaxError(got, want);
      console.log(
        `${spec.name} K=13824 max rel err ${err.toExponential(2)}; naive f32 chain ${
          naiveLongK.toExponential(2)
        }`,
      );
      assert.ok(err <= naiveLongK, `${spec.name}: ${err} > naive ${naiveLongK}`);
      assert.ok(err < 2e-6, `${spec.name}: ${err}`);
    },
  );
}
