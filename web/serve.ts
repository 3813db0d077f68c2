/**
 * `deno task web [--port N] [--host H]`: builds the browser files (`web/build.ts`) and serves the demo page,
 * the bundles and the JPEG decoder's wasm, plus the three CC0 images of `samples/` for the page's "try the
 * samples" button. Nothing is uploaded anywhere: the page embeds images in the visitor's own browser.
 *
 * ```
 * deno task web --port 8000
 * # then open http://127.0.0.1:8000/?weights=procedural:tiny-derm&size=96
 * ```
 *
 * {@linkcode serveWeb} is the same server for tests and the bench, with extra routes.
 * @module
 */
import { parseArgs } from "node:util";
import { buildWeb, describeBuild, type WebBuild } from "./build.ts";

/** Extra routes: a response, or undefined to fall through to the page's files. */
export type ExtraRoutes = (
  request: Request,
  url: URL,
) => Response | undefined | Promise<Response | undefined>;

/** Options of {@linkcode serveWeb}. */
export interface ServeOptions {
  /** Port (default 8000; 0 picks a free one). */
  readonly port?: number;
  /** Address to listen on (default 127.0.0.1). */
  readonly hostname?: string;
  /** A build to serve (default: build now). */
  readonly build?: WebBuild;
  /** Routes tried before the page's files. */
  readonly routes?: ExtraRoutes;
}

/** A running server. */
export interface WebServer {
  /** `http://host:port/`. */
  readonly url: string;
  /** What it serves. */
  readonly build: WebBuild;
  /** Stops it. */
  close(): Promise<void>;
}

const SAMPLES = new URL("../samples/", import.meta.url);
const SAMPLE_NAME = /^[A-Za-z0-9_-]+\.jpe?g$/;

async function sampleList(): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(SAMPLES)) if (e.isFile && SAMPLE_NAME.test(e.name)) names.push(e.name);
  return names.sort();
}

/**
 * Serves the page.
 *
 * @param options Port, address, build, extra routes.
 * @returns The server, listening.
 */
export async function serveWeb(options: ServeOptions = {}): Promise<WebServer> {
  const build = options.build ?? await buildWeb();
  const samples = await sampleList();
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: options.port ?? 8000,
    hostname: options.hostname ?? "127.0.0.1",
    onListen: (addr) => resolve(addr as Deno.NetAddr),
  }, async (request) => {
    const url = new URL(request.url);
    const extra = await options.routes?.(request, url);
    if (extra) return extra;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed", { status: 405 });
    }
    const name = url.pathname === "/" ? "index.html" : url.pathname.slice(1);
    const file = build.files.get(name);
    if (file) {
      return new Response(request.method === "HEAD" ? null : file.bytes, {
        headers: { "content-type": file.type, "cache-control": "no-cache" },
      });
    }
    if (name === "samples/list.json") return Response.json(samples);
    const sample = /^samples\/(.+)$/.exec(name)?.[1];
    if (sample && samples.includes(sample)) {
      return new Response(await Deno.readFile(new URL(sample, SAMPLES)), {
        headers: { "content-type": "image/jpeg" },
      });
    }
    return new Response("not found", { status: 404 });
  });
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return { url: `http://${host}:${addr.port}/`, build, close: () => server.shutdown() };
}

const USAGE = `deno task web [--port N] [--host ADDRESS]

Serves the demo page (embeddings in your browser, on your GPU, with WebGPU) and the browser build.
  --port N        port (default 8000)
  --host ADDRESS  address to listen on (default 127.0.0.1)

Open http://127.0.0.1:8000/?weights=WEIGHTS[&preset=P][&size=S][&resize=R][&classifier=URL[&head=LABEL]]
  WEIGHTS: a URL of a .safetensors file (downloaded once, then kept in the browser's cache), or
  procedural:ARCH[:SEED] (tiny-bit, tiny-derm, tiny-resnet, r50x1, r101x3, resnet50, ...).`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string" }, host: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const port = Number(values.port ?? 8000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`error: Cannot serve on port "${values.port}": expected an integer from 0 to 65535`);
    Deno.exit(2);
  }
  const build = await buildWeb();
  const server = await serveWeb({ port, hostname: values.host, build });
  console.log(`derm-webgpu web build (bundled in ${Math.round(build.bundleMs)} ms):`);
  for (const line of describeBuild(build)) console.log(`  ${line}`);
  console.log(`\nServing ${server.url}\nTry ${server.url}?weights=procedural:tiny-derm&size=96`);
}
