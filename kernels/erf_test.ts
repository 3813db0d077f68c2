import assert from "node:assert/strict";
import { packUniforms } from "../engine/kernel.ts";
import { gpuTest } from "../tests/_gpu.ts";
import { fitErfCoefficients } from "../tests/_fit_erf.ts";
import { runKernelOnce } from "./_harness.ts";
import { ERF_SMALL_COEFFICIENTS, ERF_TAIL_COEFFICIENTS, ERF_TAIL_Z_MIN, ERF_WGSL } from "./erf.wgsl.ts";
import { erfcRef, erfRef, geluRef } from "./erf_ref.ts";

/** Evaluates erf_f32, erfc_tail and gelu_erf of the snippet at every point: out[3i..3i+2]. */
const probe = {
  name: "erf_probe",
  wgsl: /* wgsl */ `
${ERF_WGSL}
struct Uniforms { count: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> u: Uniforms;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i >= u.count) { return; }
  let v = x[i];
  y[3u * i] = erf_f32(v);
  y[3u * i + 1u] = erfc_tail(max(abs(v), ${ERF_TAIL_Z_MIN}));
  y[3u * i + 2u] = gelu_erf(v);
}
`,
  bindings: [
    { name: "x", type: "read-only-storage" },
    { name: "y", type: "storage" },
  ],
  overrides: {},
} as const;

async function evaluate(device: GPUDevice, x: Float32Array) {
  const groups = Math.ceil(x.length / 64);
  const [out] = await runKernelOnce(
    device,
    probe,
    {
      workgroups: [Math.min(groups, 65535), Math.ceil(groups / 65535), 1],
      uniforms: packUniforms([["count", "u32", x.length]]),
    },
    [x, { bytes: 12 * x.length }],
  );
  const y = new Float32Array(out);
  return {
    erf: y.filter((_, i) => i % 3 === 0),
    erfc: y.filter((_, i) => i % 3 === 1),
    gelu: y.filter((_, i) => i % 3 === 2),
  };
}

/** Largest |got/want - 1| over points where `keep` holds, with the worst point. */
function maxRel(
  x: Float32Array,
  got: Float32Array,
  want: (v: number) => number,
  keep: (v: number) => boolean = () => true,
): { err: number; at: number } {
  let err = 0, at = NaN;
  x.forEach((v, i) => {
    if (!keep(v)) return;
    const w = want(v);
    const e = w === 0 ? Math.abs(got[i]) : Math.abs(got[i] / w - 1);
    if (!(e <= err)) {
      err = Number.isNaN(e) ? Infinity : e;
      at = v;
    }
  });
  return { err, at };
}

Deno.test("erfRef() and erfcRef() match values from mpmath at 30 digits on both pieces", () => {
  const cases: [number, number, number][] = [
    [0.1, 0.1124629160182849, 0.8875370839817151],
    [0.5, 0.52049987781304654, 0.47950012218695346],
    [1, 0.84270079294971487, 0.15729920705028513],
    [2, 0.99532226501895273, 0.0046777349810472658],
    [2.5, 0.99959304798255504, 0.00040695201744495894],
    [3, 0.99997790950300141, 2.2090496998585441e-5],
    [5, 0.99999999999846254, 1.5374597944280349e-12],
    [-1.5, -0.96610514647531073, 1.9661051464753107],
  ];
  for (const [z, erf, erfc] of cases) {
    assert.ok(Math.abs(erfRef(z) / erf - 1) < 1e-14, `erf(${z}) = ${erfRef(z)}`);
    assert.ok(Math.abs(erfcRef(z) / erfc - 1) < 1e-12, `erfc(${z}) = ${erfcRef(z)}`);
  }
  assert.ok(Math.abs(geluRef(-3) / -0.0040496940948902836 - 1) < 1e-13);
  assert.ok(Math.abs(geluRef(-6) / -5.9195258702261888e-9 - 1) < 1e-12);
  assert.equal(erfRef(0), 0);
  assert.equal(geluRef(0), 0);
});

Deno.test("erf.wgsl.ts coefficients are what tests/_fit_erf.ts fits", () => {
  const { small, tail } = fitErfCoefficients();
  const same = (a: readonly number[], b: readonly number[]) =>
    a.length === b.length && a.every((v, i) => Math.abs(Math.fround(v) - b[i]) <= 2 ** -23 * Math.abs(b[i]));
  assert.ok(same(small, ERF_SMALL_COEFFICIENTS), `small: fit ${small}`);
  assert.ok(same(tail, ERF_TAIL_COEFFICIENTS), `tail: fit ${tail}`);
});

gpuTest(
  "erf_f32() and gelu_erf() match the float64 erf and GELU on a dense grid over [-10, 10]",
  async (gpu) => {
    // 400,001 points, step 5e-5, plus the piece boundaries and tiny arguments.
    const points: number[] = [];
    for (let i = -200000; i <= 200000; i++) points.push(i * 5e-5);
    for (const b of [0.5, 1, 0.5 * Math.SQRT2, Math.SQRT2, 10, 1e-30, 1e-8, 3e-4]) points.push(b, -b);
    const x = Float32Array.from(points);
    const { erf, erfc, gelu } = await evaluate(gpu.device, x);
    const e = maxRel(x, erf, erfRef, (v) => v !== 0);
    const c = maxRel(x, erfc, (v) => erfcRef(Math.max(Math.abs(v), ERF_TAIL_Z_MIN)), (v) => Math.abs(v) <= 9);
    const g1 = maxRel(x, gelu, geluRef, (v) => v !== 0 && v > -1);
    const g2 = maxRel(x, gelu, geluRef, (v) => v <= -1 && v >= -12);
    console.log(
      `erf max rel ${e.err.toExponential(2)} at ${e.at}; erfc tail ${c.err.toExponential(2)} at ${c.at}; ` +
        `gelu x > -1 ${g1.err.toExponential(2)} at ${g1.at}, x <= -1 ${g2.err.toExponential(2)} at ${g2.at}`,
    );
    // Bounds in f32 ulps (2^-23 = 1.19e-7 relative each): erf 2; the tail's exp is about 1 ulp and G(s) loses
    // up to 6 ulps where its terms cancel (s near -1, a > 6); gelu adds the roundings of x / sqrt 2 and x * phi.
    assert.ok(e.err <= 2.4e-7, `erf: ${e.err} at ${e.at}`);
    assert.ok(c.err <= 1.2e-6, `erfc tail: ${c.err} at ${c.at}`);
    assert.ok(g1.err <= 6e-7, `gelu x > -1: ${g1.err} at ${g1.at}`);
    assert.ok(g2.err <= 1.2e-6, `gelu x <= -1: ${g2.err} at ${g2.at}`);
    // the far tail flushes to zero or stays tiny, never NaN
    assert.ok(x.every((v, i) => v > -10 || Math.abs(gelu[i]) < 1e-20));
  },
);
