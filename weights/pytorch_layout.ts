/**
 * Finding the state dict in a checkpoint's object tree, by the layouts the released checkpoints use
 * (testdata/groeger/README.md, "Checkpoint layouts"), without naming any model:
 *
 * | layout       | where the tensors are                    | names                                              |
 * | ------------ | ---------------------------------------- | -------------------------------------------------- |
 * | `dino`       | top-level `teacher` (else `student`)     | `module.` and `backbone.` stripped, `head.*` dropped |
 * | `mae`        | top-level `model`                        | `decoder_*` and `mask_token` dropped               |
 * | `byol`       | `state_dict` with keys under `net.`      | `net.` stripped, other keys dropped                |
 * | `simclr`     | `state_dict` with `model.<i>.*` keys     | left as they are (the ResNet model maps indices)   |
 * | `state_dict` | any other `state_dict`                   | as they are                                        |
 * | `plain`      | the top level itself holds tensors       | as they are                                        |
 *
 * In every layout a leading `module.` (DataParallel), repeated or not, is stripped. `args` is the top-level
 * `args` (an `argparse.Namespace`, or a dict) as a plain object. Entries that are not returned are listed
 * in `ignored` by their path: the other top-level keys, then the dropped and non-tensor entries of the
 * chosen dict.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { describePickleValue, isNamespaceObject } from "./pickle.ts";
import { TensorRef } from "./pytorch_tensors.ts";

/** How a checkpoint holds its weights (see the module doc). */
export type CheckpointLayout = "dino" | "mae" | "byol" | "simclr" | "state_dict" | "plain";

/** The weights found in a checkpoint. */
export interface CheckpointStateDict {
  /** The layout recognised. */
  readonly layout: CheckpointLayout;
  /** The top-level key the tensors came from ("" for `plain`). */
  readonly from: string;
  /** Tensors under their model names, in checkpoint order. */
  readonly tensors: Map<string, TensorRef>;
  /** The top-level `args` as a plain object, when present. */
  readonly args?: Record<string, unknown>;
  /** Paths of what was not returned: other top-level keys, dropped and non-tensor entries. */
  readonly ignored: string[];
}

const SIMCLR_KEY = /^model\.\d+\./;

function stripModule(name: string): string {
  while (name.startsWith("module.")) name = name.slice("module.".length);
  return name;
}

function stringKeyed(value: unknown): value is Map<string, unknown> {
  return value instanceof Map && [...value.keys()].every((k) => typeof k === "string");
}

function hasTensor(map: Map<string, unknown>): boolean {
  for (const v of map.values()) if (v instanceof TensorRef) return true;
  return false;
}

function plainArgs(value: unknown): Record<string, unknown> | undefined {
  if (isNamespaceObject(value)) return Object.fromEntries(Object.entries(value));
  if (stringKeyed(value)) return Object.fromEntries(value);
  return undefined;
}

/**
 * Finds the state dict of a checkpoint (see the module doc for the layouts and renaming).
 *
 * @param tree The checkpoint's object (`PytorchCheckpoint.tree`).
 * @param file Name for messages.
 * @returns Layout, tensors by model name, `args`, and what was ignored.
 * @throws {WeightsError} naming the file when no layout fits, and naming the tensor when two keys become
 * one name.
 *
 * @example
 * ```ts
 * const { layout, tensors } = checkpointStateDict(checkpoint.tree, checkpoint.file);
 * layout; // "dino"
 * tensors.get("blocks.0.attn.qkv.weight")?.shape; // [1152, 384]
 * ```
 */
export function checkpointStateDict(tree: unknown, file: string): CheckpointStateDict {
  if (!stringKeyed(tree)) {
    throw new WeightsError(
      file,
      "",
      `Cannot read "${file}": expected a dict of tensors or of state dicts at the top level, got ${
        describePickleValue(tree)
      }`,
    );
  }
  const args = plainArgs(tree.get("args"));
  const pick = (key: string) => {
    const value = tree.get(key);
    return stringKeyed(value) && hasTensor(value) ? value : undefined;
  };
  let layout: CheckpointLayout;
  let from: string;
  let dict: Map<string, unknown>;
  const teacher = pick("teacher") ?? pick("student");
  if (teacher) {
    [layout, from, dict] = ["dino", pick("teacher") ? "teacher" : "student", teacher];
  } else if (pick("model")) {
    [layout, from, dict] = ["mae", "model", pick("model")!];
  } else if (pick("state_dict")) {
    dict = pick("state_dict")!;
    from = "state_dict";
    const names = [...dict].filter(([, v]) => v instanceof TensorRef).map(([k]) => stripModule(k));
    layout = names.some((k) => k.startsWith("net."))
      ? "byol"
      : names.every((k) => SIMCLR_KEY.test(k))
      ? "simclr"
      : "state_dict";
  } else if (hasTensor(tree)) {
    [layout, from, dict] = ["plain", "", tree];
  } else {
    throw new WeightsError(
      file,
      "",
      `Cannot read "${file}": no state dict found: expected top-level "teacher", "student", "model" or ` +
        `"state_dict" holding tensors, or tensors at the top level, got keys [${
          [...tree.keys()].join(", ")
        }]`,
    );
  }
  const ignored = [...tree.keys()].filter((k) => k !== from && layout !== "plain");
  const at = (key: string) => from ? `${from}/${key}` : key;
  const tensors = new Map<string, TensorRef>();
  const sources = new Map<string, string>();
  for (const [key, value] of dict) {
    let name: string | undefined = stripModule(key);
    if (layout === "dino") {
      name = name.startsWith("backbone.") ? stripModule(name.slice("backbone.".length)) : name;
      if (name.startsWith("head.")) name = undefined;
    } else if (layout === "mae") {
      if (name.startsWith("decoder_") || name === "mask_token") name = undefined;
    } else if (layout === "byol") {
      name = name.startsWith("net.") ? name.slice("net.".length) : undefined;
    }
    if (name === undefined || !(value instanceof TensorRef)) {
      ignored.push(at(key));
      continue;
    }
    const previous = sources.get(name);
    if (previous !== undefined) {
      throw new WeightsError(
        file,
        at(key),
        `Cannot load "${at(key)}" from "${file}": "${at(previous)}" and "${at(key)}" both become "${name}"`,
      );
    }
    sources.set(name, key);
    tensors.set(name, value);
  }
  return { layout, from, tensors, ...(args ? { args } : {}), ignored };
}
