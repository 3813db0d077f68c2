/**
 * What the stored checkpoints `testdata/groeger/tiny-*.pth` must hold, shared by the tests of the bytes and
 * Deno file readers: the ViT teacher's per-tensor SHA-256 (recorded from the original safetensors file in
 * `testdata/procedural_weights.json`), and the ResNet's torchvision names, shapes and procedural values
 * (testdata/groeger/README.md, "Procedural weights", computed here from the formula).
 * @module
 */
import { readTestdataJson } from "./_testdata.ts";

/** One tensor's recorded name, dtype, shape and SHA-256. */
export interface RecordedTensor {
  name: string;
  dtype: string;
  shape: number[];
  sha256: string;
}

/** The recorded tensors of `groeger/tiny-vit-64.safetensors` (the DINO teacher with timm names). */
export function tinyVitTensors(): RecordedTensor[] {
  const all = readTestdataJson<Record<string, { tensors: RecordedTensor[] }>>("procedural_weights.json");
  return all["groeger/tiny-vit-64.safetensors"].tensors;
}

/** Lowercase hex SHA-256. */
export async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * torchvision's state dict names and shapes of a Bottleneck ResNet, in state dict order (no `fc`).
 *
 * @param layers Blocks per stage.
 * @param widthPerGroup Inner width per 64 planes (64 for ResNet-50).
 */
export function torchvisionResnetShapes(layers: number[], widthPerGroup: number): [string, number[]][] {
  const out: [string, number[]][] = [];
  const bn = (prefix: string, c: number) => {
    for (const p of ["weight", "bias", "running_mean", "running_var"]) out.push([`${prefix}.${p}`, [c]]);
    out.push([`${prefix}.num_batches_tracked`, []]);
  };
  out.push(["conv1.weight", [64, 3, 7, 7]]);
  bn("bn1", 64);
  let inplanes = 64;
  layers.forEach((blocks, s) => {
    const planes = 64 * 2 ** s;
    const width = planes * widthPerGroup / 64;
    const outC = planes * 4;
    for (let b = 0; b < blocks; b++) {
      const p = `layer${s + 1}.${b}`;
      out.push([`${p}.conv1.weight`, [width, inplanes, 1, 1]]);
      bn(`${p}.bn1`, width);
      out.push([`${p}.conv2.weight`, [width, width, 3, 3]]);
      bn(`${p}.bn2`, width);
      out.push([`${p}.conv3.weight`, [outC, width, 1, 1]]);
      bn(`${p}.bn3`, outC);
      if (b === 0) {
        out.push([`${p}.downsample.0.weight`, [outC, inplanes, 1, 1]]);
        bn(`${p}.downsample.1`, outC);
      }
      inplanes = outC;
    }
  });
  return out;
}

/**
 * The procedural values of a Gröger tensor, written from the README's formula: FNV-1a of `SEED/NAME`,
 * murmur3's finaliser over the Weyl sequence, `v` in [-1, 1), then by the last part of the name.
 *
 * @returns The float32 values (float64 holding float32-rounded numbers).
 */
export function grogerProcedural(seed: string, name: string, shape: number[]): number[] {
  const n = shape.reduce((a, b) => a * b, 1);
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(`${seed}/${name}`)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  const last = name.split(".").pop()!;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let x = (h + Math.imul(i, 0x9e3779b9)) >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b) >>> 0;
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35) >>> 0;
    x ^= x >>> 16;
    const v = (x >>> 0) / 2 ** 32 * 2 - 1;
    let value: number;
    if (last === "running_mean") value = 0.25 * v;
    else if (last === "running_var") value = 1 + 0.5 * v;
    else if (last === "cls_token" || last === "pos_embed") value = 0.5 * v;
    else if (last === "bias") value = 0.25 * v;
    else if (last === "weight" && shape.length === 1) value = 1 + 0.25 * v;
    else value = v * Math.sqrt(3 / (n / shape[0]));
    out.push(Math.fround(value));
  }
  return out;
}
