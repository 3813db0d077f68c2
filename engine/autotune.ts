/**
 * Kernel variants chosen per adapter and shape, by measurement. When a plan is built on an adapter it has
 * not seen, {@linkcode tuneGraph} finds every node whose op offers more than one fitting variant, times each
 * variant on that node's exact shape (a one-node plan over the real resident weights; GPU timestamps where
 * the device has them, else amortised wall time), and keeps the fastest. Winners are cached by adapter,
 * driver, engine version and shape ({@linkcode TuningCache}: a file in Deno's cache directory, IndexedDB in
 * a browser, or memory), so a second run on the adapter times nothing: the plan reads its choices back
 * through {@linkcode LowerGraphOptions.pick}.
 *
 * This module is browser compatible.
 * @module
 */
import type { Graph, GraphNode } from "./graph.ts";
import type { KernelSpec, Shape } from "./kernel.ts";
import { lowerGraph, type LoweringDevice, type LoweringTable, type WeightBinding } from "./lowering.ts";
import { PipelineCache, type PlanDevice } from "./plan.ts";
import type { Dtype } from "./precision.ts";

/** Where tuned choices live between runs. */
export interface TuningCache {
  /** The variant chosen for `key`, if known. */
  get(key: string): Promise<string | undefined> | string | undefined;
  /** Records a choice. */
  set(key: string, variant: string): Promise<void> | void;
}

/** A cache that lives as long as the process (tests, one-off runs). */
export class MemoryTuningCache implements TuningCache {
  /** The choices by key. */
  readonly entries = new Map<string, string>();
  /** The choice for `key`. */
  get(key: string): string | undefined {
    return this.entries.get(key);
  }
  /** Records a choice. */
  set(key: string, variant: string): void {
    this.entries.set(key, variant);
  }
}

/**
 * The part of a key that names the shape: the op, its input and output shapes and its attributes (what
 * decides which variant is fastest), not its name; and, when any of its tensors is not f32, their dtypes
 * (an f16 plan's choices are among other variants, and kept apart).
 */
export function shapeKey(
  node: GraphNode,
  shape: (tensor: string) => Shape,
  dtype: (tensor: string) => Dtype = () => "f32",
): string {
  const attrs = Object.keys(node.attrs).sort().map((k) => `${k}=${JSON.stringify(node.attrs[k])}`).join(",");
  const inputs = node.inputs.map((t) => `[${shape(t)}]`).join("");
  const dtypes = [...node.inputs, node.output].map(dtype);
  const stored = dtypes.every((d) => d === "f32") ? "" : `@${dtypes.join(",")}`;
  return `${node.op}${inputs}->[${shape(node.output)}]{${attrs}}${node.inPlace ? "+inplace" : ""}${stored}`;
}

/** What one tuned node chose, for logs and benchmarks. */
export interface TunedChoice {
  /** The shape key. */
  readonly key: string;
  /** Node name (the first of this shape). */
  readonly node: string;
  /** Milliseconds per run of each variant timed. */
  readonly times: Readonly<Record<string, number>>;
  /** The winner. */
  readonly variant: string;
  /** Whether it was read from the cache (nothing timed). */
  readonly cached: boolean;
}

/** Options of {@linkcode tuneGraph}. */
export interface TuneOptions {
  /** The cache to read and fill. */
  readonly cache: TuningCache;
  /** Prefix of every key: adapter, driver and engine version. */
  readonly scope: string;
  /** Runs per timing (default 3); the fastest counts. */
  readonly trials?: number;
  /** Storage dtype of each graph tensor (default f32), as the plan will have them. */
  readonly dtypes?: ReadonlyMap<string, Dtype>;
  /** How the resident weights are stored (default f32). */
  readonly weightDtype?: Dtype;
}

/**
 * Chooses, by timing, the variant of every node of `graph` that has more than one fitting variant, reading
 * and filling the cache.
 *
 * @returns The choices, and a picker that gives them to {@linkcode lowerGraph}.
 */
export async function tuneGraph(
  gpu: PlanDevice & LoweringDevice,
  graph: Graph,
  table: LoweringTable,
  weights: ReadonlyMap<string, WeightBinding>,
  options: TuneOptions,
): Promise<
  { choices: TunedChoice[]; pick: (node: GraphNode, candidates: readonly KernelSpec[]) => string | undefined }
> {
  const shape = (t: string) => graph.tensors.get(t)!;
  const dtype = (t: string): Dtype => options.dtypes?.get(t) ?? "f32";
  const storage = { dtypes: options.dtypes, weightDtype: options.weightDtype };
  // Which nodes offer a choice: lower once, recording the fitting candidates of each node.
  const fitting = new Map<string, { node: GraphNode; names: string[] }>();
  lowerGraph(graph, table, weights, gpu, {
    label: "tune/probe",
    ...storage,
    pick(node, candidates) {
      if (candidates.length > 1) {
        const key = shapeKey(node, shape, dtype);
        if (!fitting.has(key)) fitting.set(key, { node, names: candidates.map((c) => c.name) });
      }
      return undefined;
    },
  });
  const chosen = new Map<string, string>();
  const choices: TunedChoice[] = [];
  const cachePipelines = new PipelineCache(gpu.device);
  for (const [key, { node, names }] of fitting) {
    const scoped = `${options.scope}|${key}`;
    const known = await options.cache.get(scoped);
    if (known !== undefined && names.includes(known)) {
      chosen.set(key, known);
      choices.push({ key, node: node.name, times: {}, variant: known, cached: true });
      continue;
    }
    const times: Record<string, number> = {};
    for (const name of names) {
      times[name] = await timeVariant(
        gpu,
        graph,
        table,
        weights,
        node,
        name,
        cachePipelines,
        options.trials ?? 3,
        storage,
      );
    }
    const variant = names.reduce((best, n) => (times[n] < times[best] ? n : best), names[0]);
    chosen.set(key, variant);
    await options.cache.set(scoped, variant);
    choices.push({ key, node: node.name, times, variant, cached: false });
  }
  return {
    choices,
    pick: (node, candidates) => {
      if (candidates.length < 2) return undefined;
      return chosen.get(shapeKey(node, shape, dtype));
    },
  };
}

/** Milliseconds per run of `node` with variant `name`, in a one-node plan over the real weights. */
async function timeVariant(
  gpu: PlanDevice & LoweringDevice,
  graph: Graph,
  table: LoweringTable,
  weights: ReadonlyMap<string, WeightBinding>,
  node: GraphNode,
  name: string,
  cache: PipelineCache,
  trials: number,
  storage: { dtypes?: ReadonlyMap<string, Dtype>; weightDtype?: Dtype },
): Promise<number> {
  // The node alone: its inputs become the graph input(s), fresh tensors the plan declares.
  const tensors = new Map<string, Shape>();
  for (const t of [...node.inputs, node.output]) tensors.set(t, graph.tensors.get(t)!);
  const one: Graph = { tensors, nodes: [node], input: node.inputs[0], output: node.output, checkpoints: {} };
  const builder = lowerGraph(one, table, weights, gpu, {
    label: `tune/${node.name}/${name}`,
    forcedKernels: new Set([name]),
    ...storage,
    // Inputs beyond the first are declared by the node's lowering as ordinary tensors.
  });
  const plan = await builder.build(gpu, cache);
  const device = gpu.device;
  const timestamps = device.features.has("timestamp-query");
  try {
    const runOnce = async (repeats: number): Promise<number> => {
      const encoder = device.createCommandEncoder({ label: `tune/${name}` });
      let querySet: GPUQuerySet | undefined, resolve: GPUBuffer | undefined, read: GPUBuffer | undefined;
      if (timestamps) {
        querySet = device.createQuerySet({ type: "timestamp", count: 2 });
        resolve = device.createBuffer({
          size: 16,
          usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        });
        read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      }
      try {
        for (let r = 0; r < repeats; r++) {
          const writes = querySet && (r === 0 || r === repeats - 1)
            ? {
              querySet,
              ...(r === 0 ? { beginningOfPassWriteIndex: 0 } : {}),
              ...(r === repeats - 1 ? { endOfPassWriteIndex: 1 } : {}),
            }
            : undefined;
          plan.encode(encoder, 0, undefined, writes);
        }
        if (querySet) {
          encoder.resolveQuerySet(querySet, 0, 2, resolve!, 0);
          encoder.copyBufferToBuffer(resolve!, 0, read!, 0, 16);
        }
        const t0 = performance.now();
        device.queue.submit([encoder.finish()]);
        if (read) {
          await read.mapAsync(GPUMapMode.READ);
          const ticks = new BigInt64Array(read.getMappedRange().slice(0));
          read.unmap();
          return Number(ticks[1] - ticks[0]) / 1e6 / repeats;
        }
        await device.queue.onSubmittedWorkDone();
        return (performance.now() - t0) / repeats;
      } finally {
        querySet?.destroy();
        resolve?.destroy();
        read?.destroy();
      }
    };
    // Warm up (pipeline compilation), size the repeats to about 20 ms, then keep the fastest trial.
    const first = await runOnce(1);
    const repeats = Math.max(1, Math.min(16, Math.round(20 / Math.max(first, 0.05))));
    let best = Infinity;
    for (let t = 0; t < trials; t++) best = Math.min(best, await runOnce(repeats));
    return best;
  } finally {
    plan.dispose();
  }
}

/** A Deno-free scope string for an adapter: vendor, architecture, device, description and the engine. */
export function tuningScope(
  adapter: { vendor: string; architecture: string; device: string; description: string },
  engine: string,
): string {
  return [engine, adapter.vendor, adapter.architecture, adapter.device, adapter.description].join("|");
}

/** Adapters that are CPU rasterisers, where the defaults are already the measured best. */
export { isSoftwareAdapter } from "./device.ts";
