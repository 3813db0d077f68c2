/**
 * `deno task bench:serve`: a load test of `deno task serve`'s server (`cli/serve_server.ts`) on 127.0.0.1.
 *
 * For each `--max-batch` setting: a server over one embedder (loaded once, its plans warmed by one round of
 * requests that is not measured), then `--clients` concurrent clients, each sending its next request as
 * soon as the last is answered, `--requests` requests in all of `--images` instances each (JPEGs of
 * testdata/isic-cc0, each request with its own images). Every response is checked: HTTP 200, one
 * prediction per instance, and each embedding equal, bit for bit, to the one embed() gave its image alone
 * before the test; a single wrong or missing answer stops the bench with an error. Figures: requests' p50
 * and p99 latency (from sending to the parsed body), images/s over the measured wall time, and the GPU
 * batches' mean size.
 *
 * Clients and server share one process (one event loop): the latencies include the clients' own JSON work,
 * as they would on one small host; the server's work is the same as in `deno task serve`.
 * @module
 */
import { parseArgs } from "node:util";
import { createEmbedder } from "../models/registry.ts";
import type { Embedder } from "../engine/embedder.ts";
import { startServer } from "../cli/serve_server.ts";

const HELP = `deno task bench:serve: load test of deno task serve on 127.0.0.1, every answer checked

Options:
  --weights W         model (default procedural:tiny-derm; procedural embeddings carry no meaning)
  --size N            input size (default 64)
  --max-batch LIST    the server's --max-batch settings to measure (default 1,4,8)
  --clients N         concurrent clients (default 16)
  --requests N        measured requests per setting (default 96)
  --images N          instances per request (default 1)
  --max-wait-ms N     the server's --max-wait-ms (default 5)
  --workers N         decode threads (default 1)
  --json              print the figures as JSON
  --help              show this help`;

/** One setting's figures. */
export interface ServeBenchRow {
  maxBatch: number;
  clients: number;
  requests: number;
  images: number;
  seconds: number;
  imagesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  meanBatch: number;
}

/** The `q` quantile (0..1) of `values` by the nearest-rank method. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function isicJpegs(n: number): { name: string; bytes: Uint8Array<ArrayBuffer> }[] {
  const dir = new URL("../testdata/isic-cc0/", import.meta.url).pathname;
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((f) => f.endsWith(".jpg")).sort();
  if (names.length < n) throw new RangeError(`Cannot take ${n} images from "${dir}": it has ${names.length}`);
  return names.slice(0, n).map((name) => ({ name, bytes: Deno.readFileSync(`${dir}${name}`) }));
}

function sameRow(got: unknown, want: Float32Array): boolean {
  if (!Array.isArray(got) || got.length !== want.length) return false;
  for (let i = 0; i < want.length; i++) if (Math.fround(got[i]) !== want[i]) return false;
  return true;
}

async function measure(
  model: Embedder,
  files: { name: string; bytes: Uint8Array<ArrayBuffer> }[],
  want: Float32Array[],
  o: {
    maxBatch: number;
    clients: number;
    requests: number;
    images: number;
    maxWaitMs: number;
    workers: number;
  },
): Promise<ServeBenchRow> {
  const server = await startServer({
    load: () => Promise.resolve(model),
    modelName: "bench",
    hostname: "127.0.0.1",
    port: 0,
    maxBatch: o.maxBatch,
    maxWaitMs: o.maxWaitMs,
    maxInstances: Math.max(64, o.images),
    workers: o.workers,
    disposeModel: false,
  });
  try {
    await server.ready;
    const url = `${server.url}/predict`;
    // Request r carries images r*k .. r*k+k-1 (mod the set): its own, so a mixed-up answer shows.
    const bodies = Array.from({ length: files.length }, (_, r) => {
      const idx = Array.from({ length: o.images }, (_, j) => (r * o.images + j) % files.length);
      return {
        idx,
        text: JSON.stringify({ instances: idx.map((i) => ({ input_bytes: files[i].bytes.toBase64() })) }),
      };
    });
    const one = async (r: number): Promise<number> => {
      const { idx, text } = bodies[r % bodies.length];
      const t0 = performance.now();
      const response = await fetch(url, {
        method: "POST",
        body: text,
        headers: { "content-type": "application/json" },
      });
      const body = await response.json();
      const ms = performance.now() - t0;
      if (response.status !== 200) {
        throw new Error(
          `Cannot bench: request ${r} answered ${response.status}: ${JSON.stringify(body).slice(0, 200)}`,
        );
      }
      const p = body.predictions;
      if (!Array.isArray(p) || p.length !== idx.length) {
        throw new Error(`Cannot bench: request ${r}: expected ${idx.length} predictions, got ${p?.length}`);
      }
      idx.forEach((i, j) => {
        if (!sameRow(p[j].embedding, want[i])) {
          throw new Error(
            `Cannot bench: request ${r}, instances[${j}]: not the embedding of ${files[i].name}`,
          );
        }
      });
      return ms;
    };
    const round = async (count: number, offset: number) => {
      let next = 0;
      const latencies: number[] = [];
      await Promise.all(Array.from({ length: o.clients }, async () => {
        while (next < count) latencies.push(await one(offset + next++));
      }));
      return latencies;
    };
    await round(o.clients, 0); // warm-up: plans of the batch sizes this load makes
    const before = server.stats().batches!;
    const t0 = performance.now();
    const latencies = await round(o.requests, o.clients);
    const seconds = (performance.now() - t0) / 1000;
    const after = server.stats().batches!;
    const images = o.requests * o.images;
    return {
      maxBatch: o.maxBatch,
      clients: o.clients,
      requests: o.requests,
      images,
      seconds,
      imagesPerSecond: images / seconds,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      meanBatch: (after.images - before.images) / (after.batches - before.batches),
    };
  } finally {
    await server.shutdown();
  }
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      weights: { type: "string", default: "procedural:tiny-derm" },
      size: { type: "string", default: "64" },
      "max-batch": { type: "string", default: "1,4,8" },
      clients: { type: "string", default: "16" },
      requests: { type: "string", default: "96" },
      images: { type: "string", default: "1" },
      "max-wait-ms": { type: "string", default: "5" },
      workers: { type: "string", default: "1" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const int = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`--${name} must be an integer >= 0, got "${v}"`);
    return n;
  };
  const batches = values["max-batch"].split(",").map((v) => int("max-batch", v));
  const o = {
    clients: int("clients", values.clients),
    requests: int("requests", values.requests),
    images: int("images", values.images),
    maxWaitMs: int("max-wait-ms", values["max-wait-ms"]),
    workers: int("workers", values.workers),
  };
  const model = await createEmbedder(values.weights, {
    size: int("size", values.size),
    maxBatch: Math.max(...batches),
    tune: "off",
  });
  try {
    // Distinct images for every request a round sends at once, and their embeddings one by one.
    const files = isicJpegs(Math.min(441, Math.max(o.clients * o.images, 32)));
    const want: Float32Array[] = [];
    for (const f of files) want.push((await model.embed([{ bytes: f.bytes, name: f.name }]))[0]);
    const rows: ServeBenchRow[] = [];
    for (const maxBatch of batches) {
      const row = await measure(model, files, want, { ...o, maxBatch });
      rows.push(row);
      if (!values.json) {
        console.error(
          `max-batch ${maxBatch}: ${row.images} images in ${row.seconds.toFixed(1)} s = ${
            row.imagesPerSecond.toFixed(2)
          } images/s; p50 ${row.p50Ms.toFixed(0)} ms, p99 ${row.p99Ms.toFixed(0)} ms; mean batch ${
            row.meanBatch.toFixed(2)
          }`,
        );
      }
    }
    const load = Deno.loadavg().map((x) => x.toFixed(2)).join(" "); // 1, 5 and 15 minutes, as uptime prints
    if (values.json) {
      console.log(JSON.stringify(
        { model: model.describe(), adapter: model.gpu.adapterInfo.description, loadavg: load, ...o, rows },
        null,
        2,
      ));
    } else {
      console.log(
        `model: ${model.describe()}; adapter ${model.gpu.adapterInfo.description}; load average ${load}`,
      );
      console.log(
        `${o.clients} clients, ${o.requests} requests of ${o.images} image(s) per setting, every answer checked`,
      );
      console.log("| --max-batch | images/s | p50 ms | p99 ms | mean GPU batch |");
      console.log("| ----------- | -------- | ------ | ------ | -------------- |");
      for (const r of rows) {
        console.log(
          `| ${r.maxBatch} | ${r.imagesPerSecond.toFixed(2)} | ${r.p50Ms.toFixed(0)} | ${
            r.p99Ms.toFixed(0)
          } | ${r.meanBatch.toFixed(2)} |`,
        );
      }
    }
    return 0;
  } finally {
    model.dispose();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
