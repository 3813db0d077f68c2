/**
 * The fixture cases in `testdata/` (copied from the team's shared fixtures; testdata/README.md): the cases,
 * their reference tensors (read here with F64 support, which the engine's reader rightly refuses), and the
 * weights each case uses. A missing file fails the test that needs it, naming the file.
 *
 * The small weight files of the fixtures are procedural (../testdata/FIXTURES_README.md), so they are not
 * stored: {@linkcode fixtureWeightsFile} regenerates one and checks every tensor's SHA-256, and the file's,
 * against `testdata/procedural_weights.json`, recorded from the original files.
 * @module
 */
import { createHash } from "node:crypto";
import { type BitArchitecture, bitArchitecture } from "../models/bit_arch.ts";
import type { BitPreset } from "../models/bit.ts";
import { bitProceduralSource } from "../models/bit_names.ts";
import { proceduralValues } from "../weights/procedural.ts";
import { groegerValueRule } from "../models/imagenet.ts";
import { type VitArchitecture, vitProceduralSource } from "../models/vit.ts";
import { resnetProceduralSource } from "../models/resnet.ts";
import type { TensorSource } from "../weights/safetensors.ts";
import { encodeSafetensors, type TensorToWrite } from "../weights/safetensors_write.ts";
import { readTestdata, readTestdataJson, testdataPath } from "./_testdata.ts";

/** One entry of bit/cases.json. */
export interface FixtureCase {
  name: string;
  layers: number[];
  channels: number[];
  stem_chs: number;
  seed: string;
  preset: BitPreset;
  image: string;
  size: number;
  naming?: "timm" | "derm";
  store_weights?: boolean;
  intermediates?: boolean;
}

/** Reads testdata/bit/cases.json. */
export function fixtureCases(): FixtureCase[] {
  return readTestdataJson<FixtureCase[]>("bit/cases.json");
}

/** The architecture of a case. */
export function caseArchitecture(c: FixtureCase): BitArchitecture {
  return bitArchitecture(c.layers, c.channels, c.stem_chs);
}

/** The case whose weights file `c` uses (its own, or that of the case with the same seed), if one is stored. */
function storedCase(c: FixtureCase, all = fixtureCases()): FixtureCase | undefined {
  return all.find((o) => o.seed === c.seed && o.store_weights);
}

/**
 * What the embedder loads for a case: its procedural weights under the case's naming (the very tensors of
 * the fixture files, for the cases that stored them).
 */
export function caseWeights(c: FixtureCase): TensorSource {
  return bitProceduralSource(caseArchitecture(c), c.seed, { naming: c.naming ?? "timm" });
}

/**
 * Path of the weights file a case uses (regenerated, checksum-verified), or undefined when the fixtures
 * stored none for it (the large cases, which use `procedural:` weights).
 */
export async function caseWeightsPath(c: FixtureCase): Promise<string | undefined> {
  const stored = storedCase(c);
  return stored ? await fixtureWeightsFile(`bit/${stored.name}.safetensors`) : undefined;
}

/** The image file of a case. */
export function caseImagePath(c: FixtureCase): string {
  return testdataPath(new URL(c.image, "file:///bit/").pathname.slice(1));
}

/** A reference tensor. */
export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

/** Parses a reference `.safetensors` file: every tensor as float64 (F64, F32 or U8), and the metadata. */
export function parseReference(
  bytes: Uint8Array,
  file: string,
): { tensors: Map<string, RefTensor>; metadata: Record<string, string> } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const start = 8 + headerLength;
  const tensors = new Map<string, RefTensor>();
  let metadata: Record<string, string> = {};
  for (const [key, entry] of Object.entries(header)) {
    if (key === "__metadata__") {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: [b, e] } = entry as {
      dtype: string;
      shape: number[];
      data_offsets: number[];
    };
    const raw = bytes.slice(start + b, start + e).buffer;
    const data = dtype === "F64"
      ? new Float64Array(raw)
      : dtype === "F32"
      ? Float64Array.from(new Float32Array(raw))
      : dtype === "U8"
      ? Float64Array.from(new Uint8Array(raw))
      : null;
    if (!data) throw new Error(`Unexpected dtype ${dtype} for "${key}" in ${file}`);
    tensors.set(key, { shape, data });
  }
  return { tensors, metadata };
}

/** Reads a BiT case's `testdata/bit/NAME.ref.safetensors`. */
export function readReference(
  name: string,
): { tensors: Map<string, RefTensor>; metadata: Record<string, string> } {
  const file = `bit/${name}.ref.safetensors`;
  return parseReference(readTestdata(file), file);
}

/** The fixtures' bound: min(2 x PyTorch float32's own error, 5e-5). */
export function embeddingBound(metadata: Record<string, string>): number {
  return Math.min(2 * Number(metadata.torch_f32_max_rel_err), 5e-5);
}

/**
 * The bound of an f16 embedding (precision `f16`: weights and activations stored as f16 but the layers the
 * plan keeps f32, f32 arithmetic): max|e - ref| / max|ref| <= 1e-2, for every case (testdata/README.md).
 */
export const F16_BOUND = 1e-2;

/** One file's record in testdata/procedural_weights.json. */
export interface ProceduralFileRecord {
  file_sha256: string;
  bytes: number;
  metadata: Record<string, string>;
  tensors: { name: string; dtype: "F32"; shape: number[]; sha256: string }[];
}

/** The recorded checksums of the fixtures' procedural weight files, by `testdata/`-relative name. */
export function proceduralWeightsRecords(): Record<string, ProceduralFileRecord> {
  // Weight files and (with a `prefix`) checkpoints: see CheckpointRecord.
  return readTestdataJson("procedural_weights.json");
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * The procedural source that regenerates a recorded file: the BiT case of the same name in bit/cases.json,
 * or the ViT case in groeger/cases.json.
 *
 * @throws {Error} When no case describes the file.
 */
export function proceduralSourceFor(relative: string): TensorSource {
  const vit = /^groeger\/(.+)\.safetensors$/.exec(relative)?.[1];
  if (vit) {
    const c = groegerCases().find((x) => x.name === vit && x.family === "vit" && x.store_weights);
    if (!c) throw new Error(`Cannot regenerate "testdata/${relative}": no stored-weights case describes it`);
    return vitProceduralSource(groegerVitArchitecture(c), c.seed);
  }
  const name = /^bit\/(.+)\.safetensors$/.exec(relative)?.[1];
  const c = fixtureCases().find((x) => x.name === name && x.store_weights);
  if (!c) throw new Error(`Cannot regenerate "testdata/${relative}": no stored-weights case describes it`);
  return bitProceduralSource(caseArchitecture(c), c.seed, { naming: c.naming ?? "timm" });
}

/**
 * Regenerates the fixtures' weights as the bytes of the original file, checking each tensor's SHA-256
 * and the whole file's against the record.
 *
 * @throws {Error} Naming the first tensor (or the file) whose bytes differ from the record.
 */
export async function regenerateFixtureWeights(relative: string): Promise<Uint8Array<ArrayBuffer>> {
  const record = proceduralWeightsRecords()[relative];
  if (!record) throw new Error(`Cannot regenerate "testdata/${relative}": not in procedural_weights.json`);
  const source = proceduralSourceFor(relative);
  const generated = new Map<string, Uint8Array>();
  for await (const { entry, bytes } of source.stream()) generated.set(entry.name, bytes.slice());
  const tensors: TensorToWrite[] = record.tensors.map((t) => {
    const bytes = generated.get(t.name);
    if (!bytes) throw new Error(`Cannot regenerate "${t.name}" of "testdata/${relative}": not generated`);
    const got = sha256(bytes);
    if (got !== t.sha256) {
      throw new Error(
        `Regenerated "${t.name}" of "testdata/${relative}" differs: sha256 ${got}, recorded ${t.sha256}`,
      );
    }
    return { name: t.name, dtype: t.dtype, shape: t.shape, data: bytes };
  });
  if (generated.size !== tensors.length) {
    throw new Error(
      `Cannot regenerate "testdata/${relative}": ${generated.size} tensors generated, ${tensors.length} recorded`,
    );
  }
  const file = encodeSafetensors(tensors, record.metadata);
  const got = sha256(file);
  if (got !== record.file_sha256) {
    throw new Error(
      `Regenerated "testdata/${relative}" differs: sha256 ${got}, recorded ${record.file_sha256}`,
    );
  }
  return file;
}

const regenerated = new Map<string, Promise<string>>();
let regeneratedDir: string | undefined;

/**
 * The path of a fixture weights file, regenerated once per test process into a temporary folder (removed
 * when the process ends) and verified against its recorded checksums.
 */
export function fixtureWeightsFile(relative: string): Promise<string> {
  let path = regenerated.get(relative);
  if (!path) {
    path = (async () => {
      const bytes = await regenerateFixtureWeights(relative);
      if (!regeneratedDir) {
        regeneratedDir = Deno.makeTempDirSync({ prefix: "derm-fixture-weights-" });
        const dir = regeneratedDir;
        globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
      }
      const out = `${regeneratedDir}/${relative.replaceAll("/", "_")}`;
      await Deno.writeFile(out, bytes);
      return out;
    })();
    regenerated.set(relative, path);
  }
  return path;
}

/** One entry of testdata/groeger/cases.json (the ViT and ResNet-50 cases of Gröger et al.'s models). */
export interface GroegerCase {
  name: string;
  family: "vit" | "resnet";
  seed: string;
  image: string;
  resize: number;
  size: number;
  intermediates?: boolean;
  store_weights?: boolean;
  store_checkpoint?: boolean;
  checkpoint?: "dino" | "byol";
  checkpoint_format?: "legacy" | "zip";
  // resnet
  layers?: number[];
  width_per_group?: number;
  // vit
  patch?: number;
  dim?: number;
  depth?: number;
  heads?: number;
  vit_blocks?: number;
}

/** Reads testdata/groeger/cases.json. */
export function groegerCases(): GroegerCase[] {
  return readTestdataJson<GroegerCase[]>("groeger/cases.json");
}

/** Reads a Gröger case's `testdata/groeger/NAME.ref.safetensors`. */
export function readGroegerReference(
  name: string,
): { tensors: Map<string, RefTensor>; metadata: Record<string, string> } {
  const file = `groeger/${name}.ref.safetensors`;
  return parseReference(readTestdata(file), file);
}

/** The image file of a Gröger case. */
export function groegerImagePath(c: GroegerCase): string {
  return testdataPath(new URL(c.image, "file:///groeger/").pathname.slice(1));
}

/** testdata/groeger/README.md's bound: max(2 x PyTorch float32's own error, 2e-6), never above 5e-5. */
export function groegerBound(metadata: Record<string, string>): number {
  return Math.min(Math.max(2 * Number(metadata.torch_f32_max_rel_err), 2e-6), 5e-5);
}

/** The architecture of a Gröger ViT case. */
export function groegerVitArchitecture(c: GroegerCase): VitArchitecture {
  return {
    dim: c.dim!,
    depth: c.depth!,
    heads: c.heads!,
    patch: c.patch!,
    grid: c.size / c.patch!,
    mlp: 4 * c.dim!,
  };
}

/** The procedural weights of a Gröger case (its ResNet-50 or ViT, from its seed). */
export function groegerCaseWeights(c: GroegerCase): TensorSource {
  if (c.family === "resnet") {
    return resnetProceduralSource({
      layers: c.layers!,
      widthPerGroup: c.width_per_group ?? 64,
      stemChannels: 64,
    }, c.seed);
  }
  return vitProceduralSource(groegerVitArchitecture(c), c.seed);
}

/** A checkpoint's record in testdata/procedural_weights.json: its pickles are stored, its storages regenerate. */
export interface CheckpointRecord {
  file_sha256: string;
  bytes: number;
  /** The file's bytes before the first storage (the legacy format's pickles), stored in testdata/. */
  prefix: string;
  seed: string;
  /** Each storage in file order: the tensor it holds (torchvision name), dtype and shape. */
  storages: { name: string; dtype: "F32" | "I64"; shape: number[] }[];
}

/**
 * Regenerates a legacy-format checkpoint of the fixtures byte for byte: its stored pickles, then each
 * storage as torch writes it (u64 element count, little-endian values), the values from the procedural
 * formula of testdata/groeger/README.md. Checks the whole file's SHA-256 against the record.
 */
export function regenerateFixtureCheckpoint(relative: string): Uint8Array<ArrayBuffer> {
  const record = proceduralWeightsRecords()[relative] as unknown as CheckpointRecord | undefined;
  if (!record?.prefix) {
    throw new Error(`Cannot regenerate "testdata/${relative}": not in procedural_weights.json`);
  }
  const out = new Uint8Array(record.bytes);
  const prefix = readTestdata(record.prefix);
  out.set(prefix);
  let at = prefix.length;
  for (const s of record.storages) {
    const numel = s.shape.reduce((a, b) => a * b, 1);
    new DataView(out.buffer).setBigUint64(at, BigInt(numel), true);
    at += 8;
    const rule = groegerValueRule(s.name, s.shape);
    if (s.dtype === "F32" && rule) {
      out.set(new Uint8Array(proceduralValues(record.seed, s.name, numel, rule).buffer), at);
    }
    at += numel * (s.dtype === "I64" ? 8 : 4); // int64 storages (num_batches_tracked) hold zeros
  }
  const got = sha256(out);
  if (at !== record.bytes || got !== record.file_sha256) {
    throw new Error(
      `Regenerated "testdata/${relative}" differs: sha256 ${got}, recorded ${record.file_sha256}`,
    );
  }
  return out;
}

const regeneratedCheckpoints = new Map<string, Promise<string>>();

/** The path of a fixture checkpoint regenerated once per test process (verified, in a temporary folder). */
export function fixtureCheckpointFile(relative: string): Promise<string> {
  let path = regeneratedCheckpoints.get(relative);
  if (!path) {
    path = (async () => {
      const bytes = regenerateFixtureCheckpoint(relative);
      const dir = await Deno.makeTempDir({ prefix: "derm-fixture-checkpoint-" });
      globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
      const out = `${dir}/${relative.split("/").pop()}`;
      await Deno.writeFile(out, bytes);
      return out;
    })();
    regeneratedCheckpoints.set(relative, path);
  }
  return path;
}
