/**
 * The layers point one way: engine → kernels → weights → models → cli / bench / web (STYLE.md). Every
 * non-test file may import only files of its own layer or lower ones, and the library layers use only
 * web-standard APIs: `Deno.*` appears only in `*_deno.ts` loaders there. In web/, only the server and its
 * build (`serve.ts`, `build.ts`) run in Deno; the rest is bundled for the browser.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const LAYERS = ["engine", "kernels", "weights", "models", "cli", "bench", "web"] as const;
/** cli, bench and web are one layer: the top. */
const RANK: Record<string, number> = {
  engine: 0,
  kernels: 1,
  weights: 2,
  models: 3,
  cli: 4,
  bench: 4,
  web: 4,
};
/** The Deno side of web/: the rest of it is bundled for the browser. */
const WEB_DENO = ["web/serve.ts", "web/build.ts"];

function sourceFiles(): string[] {
  const out: string[] = [];
  for (const layer of LAYERS) {
    for (const e of Deno.readDirSync(new URL(`${layer}/`, ROOT))) {
      if (e.isFile && e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) out.push(`${layer}/${e.name}`);
    }
  }
  return out.sort();
}

/** Relative specifiers a file imports or re-exports, statically or through a literal dynamic import. */
function relativeImports(text: string): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) found.add(m[1]);
  return [...found];
}

Deno.test("every non-test file imports only its own layer or lower ones (engine, kernels, weights, models, cli/bench)", () => {
  const files = sourceFiles();
  assert.ok(files.length > 60, `found only ${files.length} source files`);
  const bad: string[] = [];
  for (const file of files) {
    const layer = file.split("/")[0];
    const text = Deno.readTextFileSync(new URL(file, ROOT));
    for (const spec of relativeImports(text)) {
      const target = new URL(spec, new URL(file, ROOT)).pathname.slice(ROOT.pathname.length);
      const targetLayer = target.split("/")[0];
      if (!(targetLayer in RANK)) {
        // Outside the layers: the root's deno.json (the version), and for the bench the seeded test data
        // helpers of tests/ (the bench checks kernels on the same inputs as the tests).
        const allowed = target === "deno.json" || (layer === "bench" && target.startsWith("tests/_"));
        if (!allowed) bad.push(`${file} imports ${target}, outside the layers`);
        continue;
      }
      if (RANK[targetLayer] > RANK[layer]) bad.push(`${file} (${layer}) imports ${target} (${targetLayer})`);
    }
  }
  assert.deepEqual(bad, [], "imports against the layer order");
});

Deno.test("engine/, kernels/, weights/, models/ and web/'s browser files use Deno only in *_deno.ts loaders", () => {
  const bad = sourceFiles().filter((f) => {
    const [layer, name] = f.split("/");
    if (layer === "web" ? WEB_DENO.includes(f) : RANK[layer] > RANK.models) return false;
    if (name.endsWith("_deno.ts")) return false;
    const code = Deno.readTextFileSync(new URL(f, ROOT)).replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
    return /\bDeno\./.test(code);
  });
  assert.deepEqual(bad, [], "library files that call Deno APIs");
});
