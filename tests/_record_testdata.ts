/**
 * Rewrites `testdata/MANIFEST.sha256` (every file's SHA-256, `sha256sum` format) and, given the shared
 * fixtures folder, `testdata/procedural_weights.json` from the original procedural weight files.
 *
 * ```sh
 * deno run -A tests/_record_testdata.ts [--procedural ../shared/fixtures]
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { TESTDATA } from "./_testdata.ts";

/** Weight files recorded in procedural_weights.json, relative to the fixtures folder. */
const PROCEDURAL_FILES = [
  "bit/tiny-bit-64.safetensors",
  "bit/tiny-derm-96.safetensors",
  "groeger/tiny-vit-64.safetensors",
];

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function listFiles(dir: URL, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const rel = `${prefix}${e.name}`;
    if (e.isDirectory) out.push(...listFiles(new URL(`${e.name}/`, dir), `${rel}/`));
    else if (rel !== "MANIFEST.sha256" && rel !== "README.md") out.push(rel);
  }
  return out.sort();
}

/** One file's record: tensors in file order with their SHA-256, and the whole file's. */
function recordSafetensors(bytes: Uint8Array) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__") as [
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] },
  ][];
  entries.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  const tensors = entries.map(([name, e]) => ({
    name,
    dtype: e.dtype,
    shape: e.shape,
    sha256: sha256(bytes.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1])),
  }));
  return { file_sha256: sha256(bytes), bytes: bytes.length, metadata: header.__metadata__ ?? {}, tensors };
}

/**
 * The record of a legacy-format checkpoint whose storages are procedural: the bytes before the first
 * storage (its pickles) are written to `<file>.prefix`; the storages, in file order (torch writes them by
 * sorted key), are listed with the tensor each holds.
 */
async function recordCheckpoint(original: string, relative: string, seed: string) {
  const { openPytorchFile } = await import("../weights/pytorch_deno.ts");
  const file = Deno.readFileSync(original);
  const checkpoint = await openPytorchFile(original);
  const byKey = new Map<string, { name: string; dtype: string; shape: number[]; bytes: number }>();
  for (const [path, t] of checkpoint.tensors) {
    if (t.storageOffset !== 0 || t.storage.numel !== t.numel) {
      throw new Error(`${path}: not one whole storage`);
    }
    byKey.set(t.storage.key, {
      name: path.replace(/^[^/]*\/(net\.)?/, ""),
      dtype: t.storage.type.dtype!,
      shape: [...t.shape],
      bytes: 8 + t.storage.numel * t.storage.type.bytes,
    });
  }
  await checkpoint.close();
  const keys = [...byKey.keys()].sort();
  const prefix = file.length - keys.reduce((a, k) => a + byKey.get(k)!.bytes, 0);
  Deno.writeFileSync(new URL(`${relative}.prefix`, TESTDATA), file.subarray(0, prefix));
  return {
    file_sha256: sha256(file),
    bytes: file.length,
    prefix: `${relative}.prefix`,
    seed,
    storages: keys.map((k) => {
      const { name, dtype, shape } = byKey.get(k)!;
      return { name, dtype, shape };
    }),
  };
}

/** Checkpoints regenerated from their pickles and the procedural formula, and their seeds. */
const PROCEDURAL_CHECKPOINTS: Record<string, string> = {
  "groeger/tiny-resnet-64.pth": "fixture/tiny-resnet",
};

if (import.meta.main) {
  const at = Deno.args.indexOf("--procedural");
  if (at >= 0) {
    const dir = Deno.args[at + 1];
    const lines = ["{"];
    const checkpoints = Object.keys(PROCEDURAL_CHECKPOINTS);
    PROCEDURAL_FILES.forEach((f, i) => {
      const r = recordSafetensors(Deno.readFileSync(`${dir}/${f}`));
      lines.push(` ${JSON.stringify(f)}: {`);
      lines.push(
        `  "file_sha256": ${JSON.stringify(r.file_sha256)}, "bytes": ${r.bytes}, "metadata": ${
          JSON.stringify(r.metadata)
        },`,
      );
      lines.push(`  "tensors": [`);
      r.tensors.forEach((t, k) =>
        lines.push(`   ${JSON.stringify(t)}${k < r.tensors.length - 1 ? "," : ""}`)
      );
      lines.push(`  ]`, ` }${i < PROCEDURAL_FILES.length - 1 || checkpoints.length > 0 ? "," : ""}`);
    });
    for (const [i, f] of checkpoints.entries()) {
      const r = await recordCheckpoint(`${dir}/${f}`, f, PROCEDURAL_CHECKPOINTS[f]);
      lines.push(` ${JSON.stringify(f)}: {`);
      lines.push(
        `  "file_sha256": ${JSON.stringify(r.file_sha256)}, "bytes": ${r.bytes}, "prefix": ${
          JSON.stringify(r.prefix)
        }, "seed": ${JSON.stringify(r.seed)},`,
      );
      lines.push(`  "storages": [`);
      r.storages.forEach((t, k) =>
        lines.push(`   ${JSON.stringify(t)}${k < r.storages.length - 1 ? "," : ""}`)
      );
      lines.push(`  ]`, ` }${i < checkpoints.length - 1 ? "," : ""}`);
    }
    lines.push("}");
    Deno.writeTextFileSync(new URL("procedural_weights.json", TESTDATA), lines.join("\n") + "\n");
  }
  const manifest = listFiles(TESTDATA)
    .map((rel) => `${sha256(Deno.readFileSync(new URL(rel, TESTDATA)))}  ${rel}\n`)
    .join("");
  Deno.writeTextFileSync(new URL("MANIFEST.sha256", TESTDATA), manifest);
  console.log(`testdata/MANIFEST.sha256: ${manifest.split("\n").length - 1} files`);
}
