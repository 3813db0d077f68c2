/**
 * Model graphs as data, independent of any model family: tensors with shapes, and a flat list of nodes in
 * execution order, each naming its op, the activations it reads, the tensor it writes, the resident
 * weights it binds and its attributes. A model file builds one with {@linkcode GraphBuilder}; the lowering
 * table (`engine/lowering.ts`, entries beside their kernels) turns each node into kernel steps.
 *
 * Shapes are outermost first: NHWC for images ([N, H, W, C]), [N, T, D] for token sequences, [N, D] for
 * embeddings. Every activation is f32.
 *
 * This module is browser compatible.
 * @module
 */
import { numel, type Shape } from "./kernel.ts";

/** An attribute value: a number, string, flag or list of numbers. */
export type AttrValue = number | string | boolean | readonly number[];

/** One node: an op applied to named activations and weights. */
export interface GraphNode {
  /** The op, a key of the lowering table (`conv2d`, `group_norm`, `linear`, ...). */
  readonly op: string;
  /** Unique node name, e.g. `stage3.unit07.conv2`; step labels are `<name>/<kernel>`. */
  readonly name: string;
  /** Activations read, in the op's order. */
  readonly inputs: readonly string[];
  /** The activation written: a new tensor, or with `inPlace` an existing one the op updates. */
  readonly output: string;
  /** Resident weights bound, by role (`weight`, `bias`, `gamma`, ...): graph weight names. */
  readonly weights: Readonly<Record<string, string>>;
  /** Attributes (kernel size, stride, eps, fused epilogues...). */
  readonly attrs: Readonly<Record<string, AttrValue>>;
  /** When true the op adds into (or otherwise updates) `output`, which already holds a value. */
  readonly inPlace: boolean;
}

/** A whole network for one input size and batch. */
export interface Graph {
  /** Shapes of every activation by name. */
  readonly tensors: ReadonlyMap<string, Shape>;
  /** Nodes in execution order. */
  readonly nodes: readonly GraphNode[];
  /** The model input, f32 NHWC [N, S, S, 4] (RGB and a zero channel). */
  readonly input: string;
  /** The embedding, f32 [N, D]. */
  readonly output: string;
  /** Named tensors worth comparing with references or reading back (`stem`, `stage1`, `block3`...). */
  readonly checkpoints: Readonly<Record<string, string>>;
}

/** How an op computes its output shape: the part of a lowering entry that graph building needs. */
export interface OpShape {
  /**
   * The output shape of `node` given its inputs' shapes.
   *
   * @throws {TypeError} Naming the node when the inputs or attributes do not fit the op.
   */
  outputShape(node: GraphNode, inputs: readonly Shape[]): Shape;
}

/** Options of {@linkcode GraphBuilder.node}. */
export interface NodeOptions {
  /** Activations read. */
  readonly inputs: readonly string[];
  /** Resident weights by role. */
  readonly weights?: Readonly<Record<string, string>>;
  /** Attributes. */
  readonly attrs?: Readonly<Record<string, AttrValue>>;
  /** The tensor written (default: the node name). */
  readonly output?: string;
  /** Update `output`, an existing tensor, instead of creating it (its shape must match the op's). */
  readonly inPlace?: boolean;
}

/**
 * Builds a {@linkcode Graph} node by node, inferring each output shape from the op table and checking
 * that every tensor read exists and every name is used once.
 *
 * @example
 * ```ts
 * const b = new GraphBuilder(LOWERINGS);
 * const x = b.input("input", [1, 224, 224, 4]);
 * const y = b.node("conv2d", "stem.conv", { inputs: [x], weights: { weight: "conv1.weight" },
 *   attrs: { kernel: 7, stride: 2, pad: 3 } });
 * const graph = b.build(y);
 * ```
 */
export class GraphBuilder {
  #ops: ReadonlyMap<string, OpShape>;
  #tensors = new Map<string, Shape>();
  #nodes: GraphNode[] = [];
  #names = new Set<string>();
  #input: string | undefined;
  #checkpoints: Record<string, string> = {};

  /** Starts an empty graph whose ops come from `ops` (the lowering table). */
  constructor(ops: ReadonlyMap<string, OpShape>) {
    this.#ops = ops;
  }

  /** Declares the model input tensor. */
  input(name: string, shape: Shape): string {
    if (this.#input !== undefined) throw new TypeError(`Cannot declare input "${name}": the graph has one`);
    this.#declare(name, shape);
    this.#input = name;
    return name;
  }

  /** Shape of a tensor declared so far. */
  shape(name: string): Shape {
    const s = this.#tensors.get(name);
    if (!s) throw new TypeError(`Cannot find tensor "${name}" in the graph`);
    return s;
  }

  /**
   * Appends a node and returns the tensor it writes.
   *
   * @throws {TypeError} For an unknown op, a repeated node name, a missing input, or shapes the op refuses.
   */
  node(op: string, name: string, options: NodeOptions): string {
    const entry = this.#ops.get(op);
    if (!entry) {
      throw new TypeError(
        `Cannot add node "${name}": unknown op "${op}", expected one of ${[...this.#ops.keys()]}`,
      );
    }
    if (this.#names.has(name)) throw new TypeError(`Cannot add node "${name}": the name is taken`);
    const inputs = options.inputs.map((t) => this.shape(t));
    const output = options.output ?? name;
    const node: GraphNode = {
      op,
      name,
      inputs: [...options.inputs],
      output,
      weights: { ...options.weights },
      attrs: { ...options.attrs },
      inPlace: options.inPlace ?? false,
    };
    const shape = entry.outputShape(node, inputs);
    if (node.inPlace) {
      const existing = this.shape(output);
      if (existing.length !== shape.length || existing.some((d, i) => d !== shape[i])) {
        throw new TypeError(
          `Cannot add node "${name}": it updates "${output}" [${existing}] in place but gives [${shape}]`,
        );
      }
    } else {
      this.#declare(output, shape);
    }
    this.#names.add(name);
    this.#nodes.push(node);
    return output;
  }

  /** Names a tensor as a checkpoint (compared with references, readable after a run). */
  checkpoint(key: string, tensor: string): void {
    this.shape(tensor);
    this.#checkpoints[key] = tensor;
  }

  /** Finishes the graph with `output` as the embedding. */
  build(output: string): Graph {
    if (this.#input === undefined) throw new TypeError("Cannot build the graph: it has no input");
    this.shape(output);
    return {
      tensors: new Map(this.#tensors),
      nodes: [...this.#nodes],
      input: this.#input,
      output,
      checkpoints: { ...this.#checkpoints },
    };
  }

  #declare(name: string, shape: Shape): void {
    if (this.#tensors.has(name)) throw new TypeError(`Cannot declare tensor "${name}": it exists`);
    if (!shape.every((d) => Number.isSafeInteger(d) && d > 0) || numel(shape) > 2 ** 32) {
      throw new RangeError(`Cannot declare tensor "${name}": bad shape [${shape}]`);
    }
    this.#tensors.set(name, [...shape]);
  }
}

/** Reads a numeric attribute, with a default; a non-number is a TypeError naming the node. */
export function numberAttr(node: GraphNode, key: string, fallback?: number): number {
  const v = node.attrs[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new TypeError(`Cannot read attribute "${key}" of "${node.name}": expected a number, got ${v}`);
  }
  return v;
}

/** Reads a boolean attribute (default false). */
export function flagAttr(node: GraphNode, key: string): boolean {
  const v = node.attrs[key] ?? false;
  if (typeof v !== "boolean") {
    throw new TypeError(`Cannot read attribute "${key}" of "${node.name}": expected a boolean, got ${v}`);
  }
  return v;
}

/** Reads a string attribute, with a default. */
export function stringAttr(node: GraphNode, key: string, fallback?: string): string {
  const v = node.attrs[key] ?? fallback;
  if (typeof v !== "string") {
    throw new TypeError(`Cannot read attribute "${key}" of "${node.name}": expected a string, got ${v}`);
  }
  return v;
}

/** Checks that `node` has `count` inputs of rank `rank` (when given), throwing a TypeError naming it. */
export function expectInputs(node: GraphNode, inputs: readonly Shape[], count: number, rank?: number): void {
  if (inputs.length !== count) {
    throw new TypeError(
      `Cannot build "${node.name}" (${node.op}): expected ${count} inputs, got ${inputs.length}`,
    );
  }
  if (rank !== undefined) {
    inputs.forEach((s, i) => {
      if (s.length !== rank) {
        throw new TypeError(
          `Cannot build "${node.name}" (${node.op}): expected input ${i} of rank ${rank}, got [${s}]`,
        );
      }
    });
  }
}
