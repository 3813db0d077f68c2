/**
 * A recording {@linkcode LoweringContext} for pure tests of lowering entries: shapes from a map, weights as
 * fake buffers of given sizes, `choose` as the engine does it, steps collected in a list.
 * @module
 */
import type { GraphNode } from "../engine/graph.ts";
import { DEFAULT_LAUNCH_LIMITS, type KernelLaunch, type KernelSpec, type Shape } from "../engine/kernel.ts";
import type { LoweringContext } from "../engine/lowering.ts";
import type { StepBinding } from "../engine/plan.ts";
import type { Dtype } from "../engine/precision.ts";

/** One recorded step. */
export interface RecordedStep {
  readonly spec: KernelSpec;
  readonly launch: KernelLaunch;
  readonly bindings: readonly StepBinding[];
}

/** Options of {@linkcode recordingContext}. */
export interface RecordingOptions {
  /** Shapes of the graph tensors the node may ask for. */
  readonly shapes: Readonly<Record<string, Shape>>;
  /** Byte size of each weight by graph weight name (a fake buffer of that size). */
  readonly weightBytes?: Readonly<Record<string, number>>;
  /** Variants forced by name. */
  readonly forced?: readonly string[];
  /** Device limits (default the WebGPU defaults). */
  readonly maxComputeWorkgroupsPerDimension?: number;
  /** Storage dtype of tensors by name (default f32). */
  readonly dtypes?: Readonly<Record<string, Dtype>>;
  /** How the weights are stored (default f32). */
  readonly weightDtype?: Dtype;
}

/**
 * A context for `node` and the steps and scratch tensors it records.
 *
 * @example
 * ```ts
 * const { ctx, steps } = recordingContext(node, { shapes: { x: [1, 17, 48] } });
 * linearLowering.lower(ctx);
 * ```
 */
export function recordingContext(
  node: GraphNode,
  options: RecordingOptions,
): { ctx: LoweringContext; steps: RecordedStep[]; scratch: Map<string, number> } {
  const steps: RecordedStep[] = [];
  const scratch = new Map<string, number>();
  const forced = new Set(options.forced ?? []);
  const weightOf = (role: string) => {
    const name = node.weights[role];
    const bytes = name === undefined ? undefined : options.weightBytes?.[name];
    return bytes === undefined ? undefined : { name, bytes };
  };
  const ctx: LoweringContext = {
    node,
    device: {
      limits: {
        maxComputeWorkgroupsPerDimension: options.maxComputeWorkgroupsPerDimension ??
          DEFAULT_LAUNCH_LIMITS.maxComputeWorkgroupsPerDimension,
      },
      features: new Set(),
    },
    shape(tensor) {
      const s = options.shapes[tensor];
      if (!s) throw new TypeError(`Cannot find the shape of "${tensor}"`);
      return s;
    },
    dtype(tensor) {
      return options.dtypes?.[tensor] ?? "f32";
    },
    weightDtype: options.weightDtype ?? "f32",
    scratch(suffix, bytes) {
      const name = `${node.name}.${suffix}`;
      scratch.set(name, bytes);
      return name;
    },
    weight(role) {
      const w = weightOf(role);
      if (!w) throw new TypeError(`Cannot lower "${node.name}": weight (${role}) is not loaded`);
      return { buffer: { size: w.bytes } as GPUBuffer, label: w.name };
    },
    hasWeight(role) {
      return weightOf(role) !== undefined;
    },
    choose(candidates, fits) {
      const chosen = candidates.find((c) => forced.has(c.name) && fits(c)) ?? candidates.find(fits);
      if (!chosen) throw new TypeError(`Cannot lower "${node.name}": no candidate fits`);
      return chosen;
    },
    step(spec, launch, bindings) {
      steps.push({ spec, launch, bindings });
    },
  };
  return { ctx, steps, scratch };
}

/** A graph node with defaults for the fields a test does not care about. */
export function testNode(
  op: string,
  fields: Partial<GraphNode> & { inputs: readonly string[] },
): GraphNode {
  return {
    op,
    name: fields.name ?? `test.${op}`,
    output: "y",
    weights: {},
    attrs: {},
    inPlace: false,
    ...fields,
  };
}

/** The u32 fields of a uniform buffer, in order. */
export function uniformWords(launch: KernelLaunch): number[] {
  const v = new DataView(launch.uniforms.buffer, launch.uniforms.byteOffset, launch.uniforms.byteLength);
  return Array.from({ length: launch.uniforms.byteLength / 4 }, (_, i) => v.getUint32(i * 4, true));
}
