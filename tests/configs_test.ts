/**
 * The three Deno configs agree, and the lean one stays lean: `deno.json` (library and commands; what a
 * fresh machine's quick start installs: Deno fetches every npm package of the import map and the lockfile),
 * `deno.dev.json` (the same plus test and bench packages, own lockfile) and `deno.browser.json` (browser
 * types only).
 */
import assert from "node:assert/strict";

type Config = { imports: Record<string, string>; compilerOptions?: unknown; unstable?: string[] };
const read = (name: string) => JSON.parse(Deno.readTextFileSync(new URL(`../${name}`, import.meta.url)));
const lean: Config = read("deno.json");
const dev: Config = read("deno.dev.json");
const browser: Config = read("deno.browser.json");

/** Packages only tests and benchmarks use: never in the quick start's download. */
const DEV_ONLY = [
  "onnxruntime",
  "@tensorflow",
  "apache-arrow",
  "parquet-wasm",
  "@duckdb",
  "jpeg-js",
  "imagescript",
  "protobufjs",
  "kubernetes-models",
  "yaml",
  "puppeteer",
];

Deno.test("deno.dev.json and deno.browser.json map every package as deno.json does", () => {
  for (const [key, value] of Object.entries(lean.imports)) {
    assert.equal(dev.imports[key], value, `deno.dev.json import "${key}"`);
  }
  for (const [key, value] of Object.entries(browser.imports)) {
    assert.equal(lean.imports[key], value, `deno.browser.json import "${key}" differs from deno.json`);
  }
  assert.deepEqual(dev.compilerOptions, lean.compilerOptions);
  assert.deepEqual(dev.unstable, lean.unstable);
});

Deno.test("deno.json and deno.lock hold no test or bench package", () => {
  const lock = read("deno.lock");
  const packages = [...Object.keys(lock.specifiers ?? {}), ...Object.keys(lock.npm ?? {})];
  for (const name of [...Object.values(lean.imports), ...packages]) {
    const bad = DEV_ONLY.find((p) => name.includes(p));
    assert.equal(bad, undefined, `"${name}" is a development package in the lean config or lock`);
  }
  const specifiers = Object.keys(lock.specifiers).sort();
  // "npm:name@1.2.3/sub/path" and "npm:@scope/name@1.2.3" pin "npm:name@1.2.3" and "npm:@scope/name@1.2.3".
  const pinned = (v: string) => v.replace(/^(npm:(?:@[^/]+\/)?[^/@]+@[^/]+)\/.*$/, "$1");
  const imports = [...new Set(Object.values(lean.imports).map(pinned))].sort();
  assert.deepEqual(specifiers, imports, "deno.lock pins exactly deno.json's packages");
});
