/**
 * The bench's tables as Markdown on stdout: the kernel table (as soon as it is measured) and the model's.
 * @module
 */
import type { KernelRow } from "./kernel_table.ts";
import type { Roofline } from "./roofline.ts";

const f = (x: unknown, d = 2) => (typeof x === "number" ? x.toFixed(d) : String(x));

/** The header: adapter, command, roofline and peers. */
export function printHeader(r: Record<string, unknown>): void {
  const roof = r.roofline as Roofline;
  console.log(`adapter: ${r.adapter} (backend ${r.backend}), ${r.date}; command: ${r.command}`);
  console.log(
    `roofline: ${f(roof.gflops, 1)} GFLOP/s (vec4 FMA loop), ${f(roof.gbps)} GB/s (copy), ` +
      `${roof.timestamps ? "GPU timestamps" : "wall time"}`,
  );
  const peers = r.peers as Record<string, { version?: string; status: string; reason?: string }>;
  for (const [k, v] of Object.entries(peers)) {
    console.log(
      `peer ${k}: ${v.status}${v.version ? ` ${v.version}` : ""}${v.reason ? ` (${v.reason})` : ""}`,
    );
  }
}

function kernelTable(title: string, rows: readonly KernelRow[] | undefined): void {
  if (!rows?.length) return;
  console.log(
    `\n| ${title} | x | ours ms | GFLOP/s | GB/s | % FMA roof | % BW roof | ORT ms | ours/ORT | TF.js ms | ours/TF.js |`,
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const row of rows) {
    const o = row.engines.ours;
    const peer = (k: string) => {
      const e = row.engines[k];
      if (e) return `${f(e.wallMs, 1)} | ${f(e.oursOverThis)}`;
      return `- | ${row.skipped?.[k] ? "n/a" : "-"}`;
    };
    const ours = o
      ? `${f(o.ms, 2)}${o.timing === "gpu-timestamps" ? "" : " (wall)"} | ${f(o.gflops)} | ${f(o.gbps)} | ${
        f(100 * o.flopShare, 1)
      } | ${f(100 * o.byteShare, 1)}`
      : `skipped | | | |`;
    console.log(`| ${row.label} | ${row.count} | ${ours} | ${peer("ort")} | ${peer("tfjs")} |`);
  }
  const notes = rows.flatMap((row) =>
    Object.entries(row.skipped ?? {}).map(([k, v]) => `${row.label}: ${k}: ${v}`)
  );
  for (const n of [...new Set(notes)].slice(0, 8)) console.log(`  skipped ${n}`);
}

/** The kernel and MatMul tables. */
export function printKernelTables(r: Record<string, unknown>): void {
  const ks = r.kernelShapes as { model: string; size: number; batch: number } | undefined;
  if (ks) console.log(`\nkernel shapes: ${ks.model} at ${ks.size}, batch ${ks.batch}`);
  const unsupported = r.kernelOpsWithoutEntry as Record<string, number> | undefined;
  if (unsupported) console.log(`ops without a bench entry (not timed): ${JSON.stringify(unsupported)}`);
  kernelTable("kernel shape", r.kernels as KernelRow[] | undefined);
  kernelTable("matmul (= 1x1 conv)", r.matmul as KernelRow[] | undefined);
  const rows = (r.kernels as KernelRow[] | undefined) ?? [];
  const variants = [...new Set(rows.flatMap((k) => k.variants ?? []))];
  if (variants.length) console.log(`\nour variants: ${variants.join(", ")}`);
  const sampled = rows.filter((k) => k.checked && k.checked !== "all");
  if (sampled.length) {
    console.log(`checked on sampled output rows: ${sampled.length} of ${rows.length} shapes`);
  }
  console.log(
    "ours ms: GPU timestamps (median); peers and the ours/peer ratios: amortised wall ms, the same method for every engine",
  );
}

/** The model's tables. */
export function printModelTables(r: Record<string, unknown>): void {
  console.log(`\nmodel: ${r.model}`);
  console.log("\n| figure | value |\n|---|---|");
  if (r.weightsFileBytes) {
    console.log(
      `| weight load (${
        ((r.weightsFileBytes as number) / 1e9).toFixed(2)
      } GB file to GPU, with the model's transforms) | ${f(r.loadSeconds)} s (${f(r.loadMBps, 0)} MB/s) |`,
    );
  } else console.log(`| weight load | ${f(r.loadSeconds)} s |`);
  console.log(`| first forward (plan build + run), batch ${r.batch} | ${f(r.warmupSeconds)} s |`);
  console.log(
    `| forward wall time incl. JPEG decode, batch ${r.batch} (median of ${
      (r.forwardRuns as number[]).length
    }) | ${f(r.forwardSeconds)} s |`,
  );
  console.log(`| images/s (that forward) | ${f(r.imagesPerSecond, 3)} |`);
  console.log(`| whole model | ${f(r.gmacPerImage, 1)} GMAC/image, ${f(r.modelGflops)} GFLOP/s |`);
  const lat = r.latencyBatch1 as { ms: number; wallMs: number } | undefined;
  if (lat) {
    console.log(
      `| batch-1 latency, input on the GPU | ${f(lat.ms, 1)} ms GPU, ${f(lat.wallMs, 1)} ms wall |`,
    );
  }
  const best = r.bestBatch as { batch: number; imagesPerSecond: number } | undefined;
  if (best) {
    console.log(`| best batch (throughput) | ${best.batch}: ${f(best.imagesPerSecond, 3)} images/s |`);
  }
  if (r.convGflops !== undefined) {
    console.log(`| convolutions (GPU timestamps) | ${f(r.convGflops)} GFLOP/s |`);
  }
  console.log(
    `| GPU memory: weights + activations | ${f((r.gpuWeightBytes as number) / 2 ** 20, 0)} MiB + ${
      f(((r.gpuActivationBytes as number) ?? 0) / 2 ** 20, 0)
    } MiB |`,
  );
  if (r.peakRssBytes) {
    console.log(`| peak resident memory (process) | ${f((r.peakRssBytes as number) / 2 ** 20, 0)} MiB |`);
  }
  const mp = r.modelPeers as Record<string, Record<string, unknown>> | undefined;
  for (const [k, v] of Object.entries(mp ?? {})) {
    if (typeof v !== "object") continue;
    console.log(
      `| whole model on ${k} | ${v.status}${
        v.ms !== undefined ? `, ${f(v.ms, 1)} ms wall, ours/${k} ${f(v.oursOverThis)}` : ""
      }${
        v.maxRelError !== undefined
          ? `, max rel error vs ours ${(v.maxRelError as number).toExponential(2)}`
          : ""
      }${v.reason ? ` (${v.reason})` : ""} |`,
    );
  }
  const tp = r.throughput as { batch: number; ms: number; imagesPerSecond: number }[] | undefined;
  if (tp?.length) {
    console.log("\n| batch | ms per forward (GPU) | images/s |\n|---|---|---|");
    for (const t of tp) console.log(`| ${t.batch} | ${f(t.ms, 1)} | ${f(t.imagesPerSecond, 3)} |`);
  }
  for (const [b, why] of Object.entries((r.throughputSkipped as Record<string, string>) ?? {})) {
    console.log(`  batch ${b} skipped: ${why}`);
  }
  if (r.byStage) {
    console.log("\n| stage | GPU ms |\n|---|---|");
    for (const [k, v] of Object.entries(r.byStage as Record<string, number>)) {
      console.log(`| ${k} | ${f(v, 1)} |`);
    }
    console.log("\n| kernel | GPU ms |\n|---|---|");
    for (const [k, v] of Object.entries(r.byKernel as Record<string, number>)) {
      console.log(`| ${k} | ${f(v, 1)} |`);
    }
    console.log("\n| node shape (profile) | count | ms each | GFLOP/s |\n|---|---|---|---|");
    for (const s of r.shapeProfile as { shape: string; count: number; msEach: number; gflops?: number }[]) {
      console.log(`| ${s.shape} | ${s.count} | ${f(s.msEach, 1)} | ${f(s.gflops ?? "-")} |`);
    }
  }
  console.log(`\nchart: ${r.svg}`);
}
