/**
 * Times every variant of the ViT kernels on the ViT-S/16 shapes at batch 1 (T = 197, D = 384, 6 heads of
 * 64, MLP 1536), one dispatch of one kernel at a time, beside the CPU time the process spent:
 * `deno run -A --config deno.dev.json bench/vit_kernels_bench.ts [--variants=linear_tiled,...]`.
 * (`deno task bench --model vit-s16` times the model's own nodes with the default variants, beside the
 * peers; this script compares the variants with each other, and linear with and without its GELU.)
 *
 * Every variant first matches its float64 reference on a small case in the same run. Then per shape: one
 * warm-up dispatch (compiles the pipeline), t_0 = an empty submission, and `TRIALS` times one command buffer
 * holding R dispatches, submitted and waited for once; ms = median of (t_R - t_0) / R. The machine is shared,
 * so the CPU time the process spent in each trial is measured too (process.cpuUsage): "cpu ms" = that time /
 * R / the cores llvmpipe uses, what the dispatch would take with the cores to itself. FLOPs: linear
 * 2*M*Din*Dout (the epilogue not counted), attention 4*T^2*D, layer_norm 8 per element.
 * @module
 */
import process from "node:process";
import { acquireGpu } from "../engine/device.ts";
import { createKernelPipeline } from "../engine/plan.ts";
import type { KernelLaunch, KernelSpec } from "../engine/kernel.ts";
import { runKernelOnce } from "../kernels/_harness.ts";
import { attentionLaunch, attentionVariants } from "../kernels/attention.ts";
import { attentionRef } from "../kernels/attention_ref.ts";
import { linearDirect, linearLaunch, type LinearShape, linearVariants } from "../kernels/linear.ts";
import { linearRef } from "../kernels/linear_ref.ts";
import { layerNormLaunch, layerNormSpec } from "../kernels/layer_norm.ts";
import { randomFloats } from "../tests/_random.ts";

const TRIALS = 5;
const cores = navigator.hardwareConcurrency;
const wanted = Deno.args.find((a) => a.startsWith("--variants="))?.slice(11).split(",");
const gpu = await acquireGpu();
const device = gpu.device;

function f32(n: number, seed: number, scale = 1): Float32Array<ArrayBuffer> {
  return new Float32Array(randomFloats(n, seed).map((v) => v * scale));
}

function relErr(got: Float32Array, want: Float64Array): number {
  let num = 0, den = 0;
  want.forEach((w, i) => {
    num = Math.max(num, Math.abs(got[i] - w));
    den = Math.max(den, Math.abs(w));
  });
  return num / den;
}

/** Times `launch` of `spec` on buffers filled from `data` (byte sizes for the outputs). */
async function time(spec: KernelSpec, launch: KernelLaunch, data: (Float32Array<ArrayBuffer> | number)[]) {
  const pipeline = createKernelPipeline(device, spec);
  const buffers = data.map((d) => {
    const size = typeof d === "number" ? d : d.byteLength;
    const b = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    if (typeof d !== "number") device.queue.writeBuffer(b, 0, d);
    return b;
  });
  const uniforms = device.createBuffer({
    size: launch.uniforms.byteLength,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(uniforms, 0, launch.uniforms);
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [...buffers, uniforms].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const run = async (repeat: number) => {
    const c = process.cpuUsage();
    const t = performance.now();
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let r = 0; r < repeat; r++) pass.dispatchWorkgroups(...launch.workgroups);
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    const cpu = process.cpuUsage(c);
    return { ms: performance.now() - t, cpuMs: (cpu.user + cpu.system) / 1000 };
  };
  const first = await run(1);
  const empty = await run(0);
  const one = (await run(1)).ms - empty.ms;
  const repeat = Math.max(1, Math.min(20, Math.round(300 / Math.max(one, 1))));
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < TRIALS; i++) {
    const r = await run(repeat);
    walls.push((r.ms - empty.ms) / repeat);
    cpus.push((r.cpuMs - empty.cpuMs) / repeat / cores);
  }
  [...buffers, uniforms].forEach((b) => b.destroy());
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  return { ms: median(walls), cpuMs: median(cpus), firstMs: first.ms, repeat };
}

function report(label: string, flops: number, t: Awaited<ReturnType<typeof time>>) {
  const g = (ms: number) => (flops / ms / 1e6).toFixed(2);
  console.log(
    `  ${label.padEnd(28)} ${t.ms.toFixed(2).padStart(8)} ms ${g(t.ms).padStart(6)} GFLOP/s | cpu ${
      t.cpuMs.toFixed(2).padStart(8)
    } ms ${g(t.cpuMs).padStart(6)} GFLOP/s | R=${t.repeat}, first dispatch ${t.firstMs.toFixed(0)} ms`,
  );
}

console.log(
  `adapter: ${gpu.adapterInfo.description}, DENO_WEBGPU_BACKEND=${
    Deno.env.get("DENO_WEBGPU_BACKEND") ?? ""
  }; ` +
    `${cores} cores; median of ${TRIALS} trials`,
);

// ---------- linear ----------
const M = 197;
/** The block's four linears with their epilogues. */
const linearShapes: [string, number, number, Pick<LinearShape, "activation" | "accumulate">][] = [
  ["qkv 384->1152", 384, 1152, { activation: "none", accumulate: false }],
  ["proj 384->384 + residual", 384, 384, { activation: "none", accumulate: true }],
  ["fc1 384->1536 + GELU", 384, 1536, { activation: "gelu", accumulate: false }],
  ["fc1 384->1536 (no GELU)", 384, 1536, { activation: "none", accumulate: false }],
  ["fc2 1536->384 + residual", 1536, 384, { activation: "none", accumulate: true }],
];
for (const spec of linearVariants) {
  if (wanted ? !wanted.includes(spec.name) : spec === linearDirect) continue;
  const check: LinearShape = {
    rows: 37,
    din: 96,
    dout: 72,
    bias: true,
    activation: "gelu",
    accumulate: false,
  };
  const x = f32(37 * 96, 1), w = f32(96 * 72, 2, 0.2), b = f32(72, 3);
  const [out] = await runKernelOnce(device, spec, linearLaunch(spec, check), [x, w, b, x, {
    bytes: 37 * 72 * 4,
  }]);
  const err = relErr(
    new Float32Array(out),
    linearRef(Float64Array.from(x), Float64Array.from(w), Float64Array.from(b), check),
  );
  if (!(err < 2e-6)) {
    console.log(`${spec.name}: does not match linearRef (${err}); not timed`);
    continue;
  }
  console.log(`${spec.name} (matches linearRef: ${err.toExponential(1)})`);
  let flops = 0, ms = 0, cpuMs = 0;
  for (const [label, din, dout, epilogue] of linearShapes) {
    const shape: LinearShape = { rows: M, din, dout, bias: true, ...epilogue };
    const t = await time(spec, linearLaunch(spec, shape, device.limits), [
      f32(M * din, 4),
      f32(din * dout, 5, 0.1),
      f32(dout, 6),
      f32(M * dout, 7),
      M * dout * 4,
    ]);
    report(label, 2 * M * din * dout, t);
    if (label.includes("no GELU")) continue; // a comparison row, not part of the block
    flops += 2 * M * din * dout;
    ms += t.ms;
    cpuMs += t.cpuMs;
  }
  console.log(
    `  ${"block's four linears".padEnd(28)} ${ms.toFixed(2).padStart(8)} ms ${
      (flops / ms / 1e6).toFixed(2).padStart(6)
    } GFLOP/s | cpu ${cpuMs.toFixed(2).padStart(8)} ms ${
      (flops / cpuMs / 1e6).toFixed(2).padStart(6)
    } GFLOP/s`,
  );
}

// ---------- attention ----------
const vitS = { n: 1, tokens: 197, heads: 6, headDim: 64 };
for (const spec of attentionVariants) {
  if (!spec.name.endsWith("_hd64") || (wanted && !wanted.includes(spec.name))) continue;
  const small = { n: 1, tokens: 13, heads: 2, headDim: 64 };
  const qkv = f32(13 * 3 * 128, 7);
  const [out] = await runKernelOnce(device, spec, attentionLaunch(spec, small), [qkv, {
    bytes: 13 * 128 * 4,
  }]);
  const err = relErr(new Float32Array(out), attentionRef(Float64Array.from(qkv), small));
  if (!(err < 2e-6)) {
    console.log(`${spec.name}: does not match attentionRef (${err}); not timed`);
    continue;
  }
  console.log(`${spec.name} (matches attentionRef: ${err.toExponential(1)})`);
  const t = await time(spec, attentionLaunch(spec, vitS, device.limits), [f32(197 * 1152, 8), 197 * 384 * 4]);
  report("ViT-S T 197, 6 x 64", 4 * 197 * 197 * 384, t);
}

// ---------- layer_norm ----------
if (!wanted || wanted.includes("layer_norm")) {
  console.log("layer_norm");
  const t = await time(layerNormSpec, layerNormLaunch({ rows: 197, d: 384, eps: 1e-6 }), [
    f32(197 * 384, 9),
    f32(384, 10),
    f32(384, 11),
    197 * 384 * 4,
  ]);
  report("197 x 384 (8 FLOP/element)", 8 * 197 * 384, t);
}
gpu.destroy();
