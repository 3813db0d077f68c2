/**
 * The `imagenet` preset of Gröger et al.'s models (testdata/groeger/README.md, "Preprocessing"):
 * Pillow's `Image.resize((R, R), BILINEAR)` (exact to the byte), centre crop S x S at
 * `round((R - S) / 2)`, then `(x / 255 - mean) / std` with ImageNet's mean and std. R defaults to
 * `round(S * 8 / 7)` (256 for 224), the paper's evaluation.
 *
 * This module is browser compatible.
 * @module
 */
import {
  IMAGENET_MEAN,
  IMAGENET_STD,
  normalizeScaling,
  type Preprocessing,
} from "../engine/preprocessing.ts";
import { defaultResize } from "../engine/pillow_resize.ts";

/** The preset's name, as `--preset` takes it and output files record it. */
export const IMAGENET_PRESET = "imagenet";

/**
 * The `imagenet` preprocessing at input size S.
 *
 * @param size The crop side S.
 * @param resize The resize side R (default `round(S * 8 / 7)`); at least S.
 * @returns The preprocessing.
 * @throws {RangeError} When R < S.
 * @example
 * ```ts
 * imagenetPreprocessing(224).resizeTo; // 256
 * ```
 */
export function imagenetPreprocessing(size: number, resize?: number): Preprocessing {
  const resizeTo = resize ?? defaultResize(size);
  if (!Number.isInteger(resizeTo) || resizeTo < size) {
    throw new RangeError(
      `Cannot resize to ${resizeTo} before a ${size} x ${size} crop: expected at least ${size}`,
    );
  }
  return { resize: "pillow-bilinear", size, resizeTo, ...normalizeScaling(IMAGENET_MEAN, IMAGENET_STD) };
}

/**
 * The procedural value rule of a Gröger et al. tensor (testdata/groeger/README.md, "Procedural weights"),
 * by the last dot-separated part of its name: `running_mean` 0.25 v, `running_var` 1 + 0.5 v,
 * `cls_token` / `pos_embed` 0.5 v, `bias` 0.25 v, 1-D `weight` 1 + 0.25 v, anything else (conv, linear)
 * v * sqrt(3 / fan_in) with fan_in = numel / shape[0]; `num_batches_tracked` is an int64 0 (no rule).
 */
export function groegerValueRule(
  name: string,
  shape: readonly number[],
): { a: number; b: number } | undefined {
  const last = name.slice(name.lastIndexOf(".") + 1);
  if (last === "num_batches_tracked") return undefined;
  if (last === "running_mean") return { a: 0, b: 0.25 };
  if (last === "running_var") return { a: 1, b: 0.5 };
  if (last === "cls_token" || last === "pos_embed") return { a: 0, b: 0.5 };
  if (last === "bias") return { a: 0, b: 0.25 };
  if (last === "weight" && shape.length === 1) return { a: 1, b: 0.25 };
  const numel = shape.reduce((a, b) => a * b, 1);
  return { a: 0, b: Math.sqrt(3 / (numel / shape[0])) };
}
