/**
 * Lowering: a {@linkcode Graph} to the kernel steps of a plan, through a table of op entries. Each kernel
 * file exports the entry of its op ({@linkcode OpLowering}: output shape, FLOPs, and the steps a node
 * becomes); `kernels/registry.ts` gathers them into the table. The engine never sees WGSL and has no
 * `switch` over ops: a new op is a new entry.
 *
 * The loop declares each node's output (sized from the graph and its dtype: f32, or f16 in an f16 plan,
 * `engine/precision.ts`), hands the node to its entry with a {@linkcode LoweringContext} (shapes, dtypes,
 * limits, scratch tensors, weights, variant choice, steps), and can
 * insert a `nonfinite_check` node after every node: the locator of the first layer whose output holds NaN
 * or infinity, for any graph.
 *
 * This module is browser compatible.
 * @module
 */
import type { Gpu } from "./device.ts";
import type { KernelLaunch, KernelSpec, LaunchLimits, Shape } from "./kernel.ts";
import { numel } from "./kernel.ts";
import type { Graph, GraphNode, OpShape } from "./graph.ts";
import { PlanBuilder, type StepBinding } from "./plan.ts";
import { type Dtype, storageBytes } from "./precision.ts";

/** Bytes per activation element of an f32 plan (an f16 plan's activations take 2). */
export const ACTIVATION_BYTES = 4;

/** A resident weight as a step binds it: a buffer, or a byte range of one. */
export interface WeightBinding {
  /** The buffer. */
  readonly buffer: GPUBuffer;
  /** First byte (default 0). */
  readonly offset?: number;
  /** Bytes bound (default: to the end). */
  readonly size?: number;
  /** How its values are stored (default f32). */
  readonly dtype?: Dtype;
}

/** Device facts a lowering may use: limits, features, and what kind of adapter it is. */
export interface LoweringDevice {
  /** Limits (workgroups per dimension, storage binding size, workgroup storage). */
  readonly limits: LaunchLimits & Partial<GPUSupportedLimits>;
  /** Features granted (`shader-f16`, `subgroups`, ...). */
  readonly features: ReadonlySet<string>;
  /**
   * Whether the adapter is a CPU rasteriser (llvmpipe, lavapipe, SwiftShader): ops keep the variant order
   * measured there (register tiles, no workgroup memory). `false` says it is a GPU: ops put their
   * workgroup-memory block tiles first. Undefined counts as a CPU rasteriser (the order of old callers).
   */
  readonly cpuAdapter?: boolean;
  /** The adapter's subgroup sizes (`GPUAdapterInfo.subgroupMinSize`/`subgroupMaxSize`), when known. */
  readonly subgroupSizes?: { readonly min: number; readonly max: number };
}

/**
 * The lowering facts of an acquired device: its limits and features, whether it is a CPU rasteriser, and
 * its subgroup sizes.
 *
 * @param gpu The device, from `acquireGpu`.
 * @returns Its {@linkcode LoweringDevice}.
 */
export function loweringDevice(
  gpu: Pick<Gpu, "limits" | "features" | "cpuAdapter" | "adapterInfo">,
): LoweringDevice {
  const { subgroupMinSize: min, subgroupMaxSize: max } = gpu.adapterInfo;
  return {
    limits: gpu.limits,
    features: gpu.features,
    cpuAdapter: gpu.cpuAdapter,
    subgroupSizes: min !== undefined && max !== undefined ? { min, max } : undefined,
  };
}

/**
 * Why `spec` cannot run on `device` at all (a feature it lacks, subgroups smaller than the WGSL assumes),
 * or undefined when it can. Shape limits are the op's `fits`, not this.
 *
 * @param spec The variant.
 * @param device The device's facts.
 * @returns The reason, as the end of a "Cannot ..." message, or undefined.
 */
export function deviceRefusal(spec: KernelSpec, device: LoweringDevice): string | undefined {
  for (const f of spec.features ?? []) {
    if (!device.features.has(f)) {
      return `expected device feature "${f}", got ${[...device.features].sort().join(", ") || "none"}`;
    }
  }
  const need = spec.minSubgroupSize;
  if (need !== undefined && !(device.subgroupSizes && device.subgroupSizes.min >= need)) {
    const got = device.subgroupSizes
      ? `${device.subgroupSizes.min} to ${device.subgroupSizes.max}`
      : "sizes the adapter does not report";
    return `expected subgroups of at least ${need} lanes, got ${got}`;
  }
  return undefined;
}

/** What an op's entry sees while lowering one node. */
export interface LoweringContext {
  /** The node being lowered. */
  readonly node: GraphNode;
  /** Device limits and features. */
  readonly device: LoweringDevice;
  /** Shape of a graph tensor. */
  shape(tensor: string): Shape;
  /** How a graph tensor is stored (f32, or f16 in an f16 plan): its entry picks the kernel flavour by it. */
  dtype(tensor: string): Dtype;
  /**
   * How the node's resident weights are stored (their bindings' dtype, all alike); for a node without
   * weights, how its first input is, so its flavour follows its activations. An f16 plan keeps the weights
   * of the nodes reading f32 activations in f32 (`f32Weights` in `engine/precision.ts`).
   */
  readonly weightDtype: Dtype;
  /** Declares the node's private scratch tensor `<node>.<suffix>` of `bytes` bytes and returns its name. */
  scratch(suffix: string, bytes: number): string;
  /** The resident weight bound for `role` (a TypeError naming the node and role when it is absent). */
  weight(role: string): StepBinding;
  /** Whether the node binds a weight for `role`. */
  hasWeight(role: string): boolean;
  /**
   * Picks the kernel variant for this node among `candidates` (most preferred first): a variant forced by
   * name (`--kernels`) when it is a candidate and `fits` it, else the first that fits (on a CPU rasteriser
   * leaving out the `gpuOnly` ones not forced).
   *
   * @throws {TypeError} When no candidate fits, naming the node.
   * @throws {RangeError} When a forced candidate cannot run on this device ({@linkcode deviceRefusal}).
   */
  choose(candidates: readonly KernelSpec[], fits: (spec: KernelSpec) => boolean): KernelSpec;
  /** Records a dispatch labelled `<node>/<spec.name>`; bindings are tensor names or weights. */
  step(spec: KernelSpec, launch: KernelLaunch, bindings: readonly StepBinding[]): void;
}

/** The entry of one op in the lowering table. */
export interface OpLowering extends OpShape {
  /** The op's name, its key in the table. */
  readonly op: string;
  /** Floating-point operations of one node over its whole batch (2 per multiply-add), for GFLOP/s. */
  flops(node: GraphNode, shape: (tensor: string) => Shape): number;
  /** Records the node's kernel steps. */
  lower(ctx: LoweringContext): void;
}

/** The lowering table: op name to entry. */
export type LoweringTable = ReadonlyMap<string, OpLowering>;

/** Builds a table from entries, refusing two entries for one op. */
export function loweringTable(entries: readonly OpLowering[]): LoweringTable {
  const table = new Map<string, OpLowering>();
  for (const e of entries) {
    if (table.has(e.op)) throw new TypeError(`Cannot register op "${e.op}" twice`);
    table.set(e.op, e);
  }
  return table;
}

/** The op the non-finite pass inserts: flags (u32 per image) whether its input holds NaN or infinity. */
export const NONFINITE_CHECK_OP = "nonfinite_check";

/** Options of {@linkcode lowerGraph}. */
export interface LowerGraphOptions {
  /** Plan label (GPU object labels and errors). */
  readonly label: string;
  /** Tensors kept whole for the run, to read back afterwards (checkpoints). */
  readonly keep?: readonly string[];
  /** Kernel variants forced by name where they are candidates. */
  readonly forcedKernels?: ReadonlySet<string>;
  /**
   * The storage dtype of each graph tensor (`graphDtypes` in `engine/precision.ts`); tensors it does not
   * name, and all of them by default, are f32.
   */
  readonly dtypes?: ReadonlyMap<string, Dtype>;
  /** How resident weights whose binding names no dtype are stored (default f32). */
  readonly weightDtype?: Dtype;
  /**
   * Chooses among the variants that fit a node when none is forced (the autotuner's choices,
   * `engine/autotune.ts`); undefined keeps the table's preference.
   */
  readonly pick?: (node: GraphNode, fitting: readonly KernelSpec[]) => string | undefined;
  /**
   * The non-finite pass: after node k, flag each image whose output holds NaN or infinity as a u32 at
   * byte `k * stride + 4 * n` of `buffer` (stride a multiple of the storage offset alignment; zeroed).
   */
  readonly nonfiniteFlags?: { readonly buffer: GPUBuffer; readonly stride: number };
}

/**
 * Lowers `graph` into plan steps (no GPU objects yet: {@linkcode PlanBuilder.build} creates them).
 *
 * @param graph The network for one input size and batch.
 * @param table Op entries.
 * @param weights Resident weights by graph weight name.
 * @param device Limits and features.
 * @param options Label, kept tensors, forced variants, non-finite pass.
 * @returns The builder holding every step, with the input declared and the embedding as output.
 * @throws {TypeError} For an op missing from the table, a missing weight, or shapes an entry refuses.
 */
export function lowerGraph(
  graph: Graph,
  table: LoweringTable,
  weights: ReadonlyMap<string, WeightBinding>,
  device: LoweringDevice,
  options: LowerGraphOptions,
): PlanBuilder {
  const builder = new PlanBuilder(options.label);
  const keep = new Set(options.keep ?? []);
  const shape = (name: string): Shape => {
    const s = graph.tensors.get(name);
    if (!s) throw new TypeError(`Cannot lower "${options.label}": tensor "${name}" has no shape`);
    return s;
  };
  const dtype = (name: string): Dtype => options.dtypes?.get(name) ?? "f32";
  const declare = (name: string) =>
    builder.tensor(name, {
      bytes: storageBytes(numel(shape(name)), dtype(name)),
      keep: keep.has(name),
      dtype: dtype(name),
    });
  builder.input(graph.input, storageBytes(numel(shape(graph.input)), dtype(graph.input)), dtype(graph.input));
  const forced = options.forcedKernels ?? new Set<string>();
  const lowerNode = (node: GraphNode, extraWeights?: ReadonlyMap<string, WeightBinding>) => {
    const entry = table.get(node.op);
    if (!entry) {
      throw new TypeError(`Cannot lower "${node.name}": no kernel implements op "${node.op}"`);
    }
    if (!node.inPlace && node.output !== graph.input && !graph.tensors.has(node.output)) {
      throw new TypeError(`Cannot lower "${node.name}": output "${node.output}" has no shape`);
    }
    // Inputs are declared by the nodes that write them; in a graph cut to one node (the autotuner's) they
    // and an in-place output are declared here. Declaring a tensor again is a no-op.
    for (const t of node.inputs) if (t !== graph.input && graph.tensors.has(t)) declare(t);
    declare(node.output);
    const weightOf = (role: string): WeightBinding | undefined => {
      const name = node.weights[role];
      return name === undefined ? undefined : (extraWeights?.get(name) ?? weights.get(name));
    };
    // The dtype of each weight the node binds (a binding without one: the option's).
    const bound = Object.entries(node.weights).flatMap(([role, name]) => {
      const w = weightOf(role);
      return w ? [{ role, name, dtype: w.dtype ?? options.weightDtype ?? "f32" }] : [];
    });
    const weightDtypes = [...new Set(bound.map((b) => b.dtype))];
    if (weightDtypes.length > 1) {
      throw new TypeError(
        `Cannot lower "${node.name}": expected weights of one dtype, got ${
          bound.map((b) => `${b.name} (${b.role}) ${b.dtype}`).join(", ")
        }`,
      );
    }
    const ctx: LoweringContext = {
      node,
      device,
      shape,
      dtype,
      weightDtype: weightDtypes[0] ?? (node.inputs.length > 0 ? dtype(node.inputs[0]) : "f32"),
      scratch(suffix, bytes) {
        return builder.tensor(`${node.name}.${suffix}`, { bytes });
      },
      weight(role) {
        const w = weightOf(role);
        if (!w) {
          throw new TypeError(
            `Cannot lower "${node.name}": weight "${node.weights[role] ?? role}" (${role}) is not loaded`,
          );
        }
        return { buffer: w.buffer, label: node.weights[role], offset: w.offset, size: w.size };
      },
      hasWeight(role) {
        return weightOf(role) !== undefined;
      },
      choose(candidates, fits) {
        for (const c of candidates) {
          const why = forced.has(c.name) ? deviceRefusal(c, device) : undefined;
          if (why) {
            throw new RangeError(`Cannot use kernel "${c.name}" for "${node.name}" on this device: ${why}`);
          }
        }
        // GPU-only variants on a CPU rasteriser: only when forced (so the tuner does not time them there)
        const offered = device.cpuAdapter === false
          ? candidates
          : candidates.filter((c) => !c.gpuOnly || forced.has(c.name));
        const fitting = offered.filter(fits);
        const picked = options.pick?.(node, fitting);
        const chosen = fitting.find((c) => forced.has(c.name)) ?? fitting.find((c) => c.name === picked) ??
          fitting[0];
        if (!chosen) {
          throw new TypeError(
            `Cannot lower "${node.name}": none of ${candidates.map((c) => c.name).join(", ")} fits its shape`,
          );
        }
        return chosen;
      },
      step(spec, launch, bindings) {
        builder.step({ label: `${node.name}/${spec.name}`, spec, launch, bindings });
      },
    };
    entry.lower(ctx);
  };
  for (const [k, node] of graph.nodes.entries()) {
    lowerNode(node);
    if (options.nonfiniteFlags) lowerNonfiniteCheck(node, k, options.nonfiniteFlags, lowerNode);
  }
  builder.output(graph.output);
  return builder;
}

/** Inserts the check of node k's output, bound to its slot of the flags buffer. */
function lowerNonfiniteCheck(
  node: GraphNode,
  k: number,
  flags: { readonly buffer: GPUBuffer; readonly stride: number },
  lowerNode: (node: GraphNode, extraWeights: ReadonlyMap<string, WeightBinding>) => void,
): void {
  const slot = `nonfinite flags/${k}`;
  lowerNode(
    {
      op: NONFINITE_CHECK_OP,
      name: node.name,
      inputs: [node.output],
      output: node.output,
      weights: { flags: slot },
      attrs: {},
      inPlace: true,
    },
    // The slot's size is 4 bytes per image: the entry binds it whole.
    new Map([[slot, { buffer: flags.buffer, offset: k * flags.stride, size: flags.stride }]]),
  );
}

/**
 * Floating-point operations of the whole graph (2 per multiply-add), summed over its nodes.
 *
 * @param graph The graph.
 * @param table Op entries.
 * @returns FLOPs for the graph's batch.
 */
export function graphFlops(graph: Graph, table: LoweringTable): number {
  const shape = (t: string) => graph.tensors.get(t)!;
  return graph.nodes.reduce((sum, node) => sum + (table.get(node.op)?.flops(node, shape) ?? 0), 0);
}
