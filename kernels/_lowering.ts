/**
 * Helpers shared by the lowering entries of the kernels: errors that name the node and op, and checks of
 * the resident weights a node binds.
 *
 * This module is browser compatible.
 * @module
 */
import type { GraphNode } from "../engine/graph.ts";
import type { LoweringContext } from "../engine/lowering.ts";
import type { Shape } from "../engine/kernel.ts";
import type { StepBinding } from "../engine/plan.ts";
import { storageBytes } from "../engine/precision.ts";

/** A TypeError `Cannot build "<node>" (<op>): <message>`. */
export function nodeError(node: GraphNode, message: string): TypeError {
  return new TypeError(`Cannot build "${node.name}" (${node.op}): ${message}`);
}

/** Bytes a binding exposes: its `size`, else the buffer from `offset` to the end. */
export function bindingBytes(binding: StepBinding): number | undefined {
  if (typeof binding === "string") return undefined;
  if (binding.size !== undefined) return binding.size;
  const size = (binding.buffer as { size?: number }).size;
  return size === undefined ? undefined : size - (binding.offset ?? 0);
}

/**
 * The weight bound for `role`, checked to hold exactly `floats` values of the plan's weight dtype (its
 * `size`, or its buffer's size past `offset`: 4 bytes each in f32, 2 in f16 padded to a multiple of 4), so a
 * tensor of another shape with enough bytes is caught too.
 *
 * @throws {TypeError} Naming the node, the role, the expected layout and the bytes found.
 */
export function checkedWeight(
  ctx: LoweringContext,
  role: string,
  floats: number,
  layout: string,
): StepBinding {
  const binding = ctx.weight(role);
  const bytes = bindingBytes(binding);
  const dtype = ctx.weightDtype;
  const want = storageBytes(floats, dtype);
  if (bytes !== undefined && bytes !== want) {
    throw nodeError(
      ctx.node,
      `expected weight "${
        ctx.node.weights[role] ?? role
      }" (${role}) of ${want} bytes (${dtype} ${layout}), got ${bytes}`,
    );
  }
  return binding;
}

/** Product of all dimensions but the last: the rows of a row-major [..., D] tensor. */
export function leadingRows(shape: Shape): number {
  return shape.slice(0, -1).reduce((a, b) => a * b, 1);
}
