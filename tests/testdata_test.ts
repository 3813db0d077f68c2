/**
 * The repository's test data is complete and intact: every file `testdata/MANIFEST.sha256` lists is there
 * with its recorded SHA-256, nothing unlisted hides beside them, and the fixtures' procedural weight files,
 * which are not stored, regenerate bit for bit from their formula.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readTestdata, readTestdataText, TESTDATA } from "./_testdata.ts";
import {
  proceduralWeightsRecords,
  regenerateFixtureCheckpoint,
  regenerateFixtureWeights,
} from "./_fixtures.ts";

function listFiles(dir: URL, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const rel = `${prefix}${e.name}`;
    if (e.isDirectory) out.push(...listFiles(new URL(`${e.name}/`, dir), `${rel}/`));
    else out.push(rel);
  }
  return out;
}

Deno.test("testdata/: every file of MANIFEST.sha256 is present with its recorded SHA-256", () => {
  const lines = readTestdataText("MANIFEST.sha256").trim().split("\n");
  assert.ok(lines.length >= 490, `expected the whole fixture set, got ${lines.length} files`);
  const listed = new Set<string>();
  for (const line of lines) {
    const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    assert.ok(m, `malformed manifest line "${line}"`);
    const [, want, rel] = m;
    listed.add(rel);
    const got = createHash("sha256").update(readTestdata(rel)).digest("hex");
    assert.equal(got, want, `testdata/${rel} was altered: sha256 ${got}, recorded ${want}`);
  }
  const unlisted = listFiles(TESTDATA).filter((f) =>
    !listed.has(f) && f !== "MANIFEST.sha256" && f !== "README.md"
  );
  assert.deepEqual(
    unlisted,
    [],
    "files in testdata/ missing from MANIFEST.sha256 (run tests/_record_testdata.ts)",
  );
});

Deno.test("testdata/: the fixtures' BiT and ViT weight files regenerate bit for bit from the procedural formulas", async () => {
  const records = proceduralWeightsRecords();
  for (
    const file of [
      "bit/tiny-bit-64.safetensors",
      "bit/tiny-derm-96.safetensors",
      "groeger/tiny-vit-64.safetensors",
    ]
  ) {
    const bytes = await regenerateFixtureWeights(file);
    assert.equal(bytes.length, records[file].bytes);
  }
});

Deno.test("no source file reads the shared fixtures beside the checkout: tests use testdata/ only", () => {
  const root = new URL("../", import.meta.url);
  const offenders: string[] = [];
  const walk = (dir: URL, prefix: string) => {
    for (const e of Deno.readDirSync(dir)) {
      if (e.name.startsWith(".") || e.name === "testdata" || e.name === "node_modules") continue;
      const rel = `${prefix}${e.name}`;
      if (e.isDirectory) walk(new URL(`${e.name}/`, dir), `${rel}/`);
      else if (/\.(ts|js|sh)$/.test(e.name)) {
        const text = Deno.readTextFileSync(new URL(e.name, dir));
        // The one exception: the tool that refreshes testdata/ from the shared fixtures.
        if (rel === "tests/_record_testdata.ts") continue;
        if (/\.\.\/shared\/|shared\/(fixtures|datasets)/.test(text)) offenders.push(rel);
      }
    }
  };
  walk(root, "");
  assert.deepEqual(offenders, [], "these files read ../shared, which a clone of the repository lacks");
});

Deno.test("testdata/: tiny-resnet-64.pth (legacy format) regenerates bit for bit from its pickles and the formula", () => {
  const bytes = regenerateFixtureCheckpoint("groeger/tiny-resnet-64.pth");
  assert.equal(bytes.length, 14_127_327);
  // The storages are 99.9% of the file: only the pickles are stored.
  assert.ok(readTestdata("groeger/tiny-resnet-64.pth.prefix").length < 16_384);
});
