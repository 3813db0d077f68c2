/**
 * The browser build, made in memory by Deno's own bundler (`Deno.bundle`, esbuild inside Deno; no
 * development package): one ES module per entry, each self-contained, minified, with no Deno API.
 *
 * | file               | entry                  | what                                                         |
 * | ------------------ | ---------------------- | ------------------------------------------------------------ |
 * | `derm-webgpu.js`   | `mod.ts`               | the library: `createEmbedder`, `decodeImage`, errors...      |
 * | `worker.js`        | `web/worker.ts`        | the embedding worker (the library inside)                    |
 * | `worker-client.js` | `web/worker_client.ts` | `WorkerEmbedder`, the worker seen from a page                |
 * | `page.js`          | `web/page.ts`          | the demo page's code                                         |
 * | `mozjpeg_dec.wasm` | `@jsquash/jpeg`        | the JPEG decoder, fetched beside the script that decodes     |
 * | `index.html`       | `web/index.html`       | the demo page                                                |
 *
 * The JPEG decoder's glue finds its wasm with `new URL("mozjpeg_dec.wasm", import.meta.url)`, so the wasm
 * is served beside `derm-webgpu.js` and `worker.js`.
 *
 * @module
 */

/** One built file. */
export interface BuiltFile {
  /** The bytes. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Its `content-type`. */
  readonly type: string;
  /** Its size gzip-compressed (level of `CompressionStream`), as a server would send it. */
  readonly gzipBytes: number;
}

/** The build: files by name (no leading slash). */
export interface WebBuild {
  readonly files: ReadonlyMap<string, BuiltFile>;
  /** Milliseconds the bundler took. */
  readonly bundleMs: number;
}

const ROOT = new URL("../", import.meta.url);

/** Output names of the bundle entries. */
const ENTRIES: Readonly<Record<string, string>> = {
  "mod.ts": "derm-webgpu.js",
  "web/worker.ts": "worker.js",
  "web/worker_client.ts": "worker-client.js",
  "web/page.ts": "page.js",
};

async function gzipSize(bytes: Uint8Array<ArrayBuffer>): Promise<number> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return (await new Response(stream).arrayBuffer()).byteLength;
}

/** A Deno API call (`Deno.readFile(...)`) in bundled code: there must be none. */
const DENO_API = /\bDeno\.[a-z]\w*\s*\(/;

/**
 * Builds the browser files.
 *
 * @param options `minify` (default true).
 * @returns The files.
 * @throws {Error} When the bundler fails, or a bundle calls a Deno API.
 */
export async function buildWeb(options: { minify?: boolean } = {}): Promise<WebBuild> {
  const t0 = performance.now();
  const result = await Deno.bundle({
    entrypoints: Object.keys(ENTRIES).map((e) => new URL(e, ROOT).pathname),
    outputDir: new URL("web/dist/", ROOT).pathname,
    platform: "browser",
    format: "esm",
    minify: options.minify ?? true,
    write: false,
  });
  const bundleMs = performance.now() - t0;
  if (!result.success || !result.outputFiles) {
    const why = result.errors.map((e) => e.text).join("; ");
    throw new Error(`Cannot bundle the web build: ${why || "the bundler reported no output"}`);
  }
  const files = new Map<string, BuiltFile>();
  const add = async (name: string, bytes: Uint8Array<ArrayBuffer>, type: string) => {
    files.set(name, { bytes, type, gzipBytes: await gzipSize(bytes) });
  };
  for (const out of result.outputFiles) {
    const relative = out.path.slice(new URL("web/dist/", ROOT).pathname.length);
    const entry = Object.keys(ENTRIES).find((e) => e.replace(/\.ts$/, ".js") === relative);
    if (!entry) continue;
    const bytes = new Uint8Array(out.contents!);
    const text = new TextDecoder().decode(bytes);
    const call = DENO_API.exec(text);
    if (call) throw new Error(`Cannot build "${ENTRIES[entry]}": it calls a Deno API (${call[0]}...)`);
    await add(ENTRIES[entry], bytes, "text/javascript; charset=utf-8");
  }
  const missing = Object.values(ENTRIES).filter((n) => !files.has(n));
  if (missing.length > 0) throw new Error(`Cannot build the web files: no output for ${missing.join(", ")}`);
  const wasm = new URL(import.meta.resolve("@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm"));
  await add("mozjpeg_dec.wasm", await Deno.readFile(wasm), "application/wasm");
  await add("index.html", await Deno.readFile(new URL("web/index.html", ROOT)), "text/html; charset=utf-8");
  return { files, bundleMs };
}

/** The build's files and sizes as lines, for the server's start-up message and the README. */
export function describeBuild(build: WebBuild): string[] {
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  return [...build.files].map(([name, f]) =>
    `${name.padEnd(18)} ${kb(f.bytes.length).padStart(10)}  gzip ${kb(f.gzipBytes)}`
  );
}
