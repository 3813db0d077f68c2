/**
 * `deno task bench --tiny --json`: the JSON has the documented shape, and every reported figure is a
 * positive, finite number (errors: finite and >= 0). Runs the bench as a subprocess (about a minute on
 * llvmpipe), skipped without an adapter like every GPU test. `--list-kernels` needs no adapter.
 * @module
 */
import { testGpu } from "../tests/_gpu.ts";
import { KERNELS } from "../kernels/registry.ts";

function assert(cond: unknown, message = "assertion failed"): asserts cond {
  if (!cond) throw new Error(message);
}

function assertEquals(got: unknown, want: unknown, message = ""): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${message}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  }
}

function walk(value: unknown, path: string, bad: string[]): void {
  if (typeof value === "number") {
    const isError = /Error$/.test(path.split(".").pop()!.replace(/\[\d+\]$/, ""));
    const ok = Number.isFinite(value) && (isError ? value >= 0 : value > 0);
    if (!ok) bad.push(`${path} = ${value}`);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => walk(v, `${path}[${i}]`, bad));
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k, bad);
  }
}

Deno.test({
  name: "bench --tiny --json prints the documented figures, all positive and finite",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const gpu = await testGpu();
    if (typeof gpu === "string") {
      if (Deno.env.get("CI")) throw new Error(`No WebGPU adapter under CI: ${gpu}`);
      t.step({ name: `skipped: ${gpu}`, ignore: true, fn() {} });
      return;
    }
    const svg = await Deno.makeTempFile({ suffix: ".svg" });
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        new URL("../bench/bench.ts", import.meta.url).pathname,
        "--tiny",
        "--json",
        "--svg",
        svg,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert(out.success, `bench failed: ${stderr.slice(-2000)}`);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    for (
      const key of [
        "adapter",
        "date",
        "command",
        "roofline",
        "peers",
        "kernels",
        "throughput",
        "latencyBatch1",
      ]
    ) {
      assert(key in r, `missing "${key}"`);
    }
    for (
      const key of [
        "loadSeconds",
        "forwardSeconds",
        "imagesPerSecond",
        "peakGpuBytes",
        "gpuWeightBytes",
        "peakRssBytes",
      ]
    ) {
      assertEquals(typeof r[key], "number", key);
    }
    assert(r.roofline.gflops > 0 && r.roofline.gbps > 0);
    const kinds = new Set(r.kernels.map((k: { kind: string }) => k.kind));
    for (const kind of ["conv2d", "group_norm", "max_pool", "global_mean_pool"]) {
      assert(kinds.has(kind), kind);
    }
    assertEquals(r.kernelShapes.model, "r101x3", "kernelShapes.model");
    assertEquals(r.facts.family, "bit", "facts.family");
    assert(r.throughput.some((t: { batch: number }) => t.batch === r.bestBatch.batch), "bestBatch");
    for (const row of r.kernels) {
      assert(row.engines.ours, `ours not timed on ${row.label}: ${JSON.stringify(row.skipped)}`);
      assert(Array.isArray(row.variants) && row.variants.length > 0, `${row.label}: no variants`);
      assertEquals(typeof row.checked, "string", `${row.label}.checked`);
      for (const key of ["ms", "wallMs", "gflops", "gbps", "flopShare", "byteShare", "maxRelError"]) {
        assertEquals(typeof row.engines.ours[key], "number", `${row.label}.${key}`);
      }
    }
    assert(Array.isArray(r.layers) && r.layers.length > 0, "no per-layer figures");
    const bad: string[] = [];
    walk(r, "", bad);
    assertEquals(bad, [], `non-positive or non-finite figures:\n${bad.join("\n")}`);
    const chart = await Deno.readTextFile(svg);
    assert(chart.startsWith("<svg") && chart.includes("</svg>"));
    await Deno.remove(svg);
  },
});

Deno.test("bench --list-kernels prints every kernel variant of the registry, one per line", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      new URL("../bench/bench.ts", import.meta.url).pathname,
      "--list-kernels",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr).slice(-2000));
  assertEquals(new TextDecoder().decode(out.stdout).trim().split("\n"), [...KERNELS.keys()], "kernel names");
});
