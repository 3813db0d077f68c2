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

/** Files recorded in procedural_weights.json, relative to the fixtures folder. */
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

if (import.meta.main) {
  const at = Deno.args.indexOf("--procedural");
  if (at >= 0) {
    const dir = Deno.args[at + 1];
    const lines = ["{"];
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
      lines.push(`  ]`, ` }${i < PROCEDURAL_FILES.length - 1 ? "," : ""}`);
    });
    lines.push("}");
    Deno.writeTextFileSync(new URL("procedural_weights.json", TESTDATA), lines.join("\n") + "\n");
  }
  const manifest = listFiles(TESTDATA)
    .map((rel) => `${sha256(Deno.readFileSync(new URL(rel, TESTDATA)))}  ${rel}\n`)
    .join("");
  Deno.writeTextFileSync(new URL("MANIFEST.sha256", TESTDATA), manifest);
  console.log(`testdata/MANIFEST.sha256: ${manifest.split("\n").length - 1} files`);
}
