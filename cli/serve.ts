/**
 * `deno task serve`: Derm Foundation's Vertex AI prediction API (`{"instances": [...]}` in,
 * `{"predictions": [...]}` out) over WebGPU from one Deno process, as a Vertex AI custom container or on
 * any host. Listens at once (health 503), loads the model (health 200), micro-batches the instances of
 * concurrent requests onto the GPU; SIGTERM or SIGINT stops accepting, finishes the requests in flight and
 * exits 0. The server itself is `serve_server.ts` ({@linkcode startServer}); the flags `serve_args.ts`.
 *
 * ```sh
 * deno task serve --weights procedural:tiny-derm --size 64 --port 8080
 * ```
 * @module
 */
import { createEmbedder } from "../models/registry.ts";
import { type Classifier, parseClassifier } from "../models/classifier.ts";
import { describeGpu } from "../engine/device.ts";
import { reportError } from "./errors.ts";
import { resolveModel } from "./model_cache.ts";
import { FileTuningCache } from "./tuning_cache.ts";
import { openWeightsArgument } from "./weights_arg.ts";
import { ENGINE } from "./embed.ts";
import { HELP, parseServeArgs, type ServeArgs } from "./serve_args.ts";
import { startServer } from "./serve_server.ts";

function usage(message: string): number {
  console.error(`error: ${message}\n\nRun with --help for usage.`);
  return 2;
}

/** Runs the command with `args` until a signal stops it; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let o: ServeArgs | "help";
  try {
    o = parseServeArgs(args, (name) => Deno.env.get(name));
  } catch (e) {
    return usage((e as Error).message);
  }
  if (o === "help") {
    console.log(HELP);
    return 0;
  }
  const info = (line: string) => o.quiet || console.error(`serve: ${line}`);
  let classifier: { classifier: Classifier; name: string } | undefined;
  if (o.classifier !== undefined) {
    try {
      let value: unknown;
      try {
        value = JSON.parse(await Deno.readTextFile(o.classifier));
      } catch (e) {
        throw new TypeError(`Cannot read classifier "${o.classifier}": ${(e as Error).message}`);
      }
      classifier = { classifier: parseClassifier(value, o.classifier), name: o.classifier };
    } catch (e) {
      return reportError(e, o.verbose);
    }
  }

  // Signals from now on: during loading too (the load finishes, then everything is freed).
  const stop = Promise.withResolvers<Deno.Signal>();
  let signalled = false;
  const listeners = (["SIGTERM", "SIGINT"] as const).map((signal) => {
    const listener = () => {
      if (signalled && signal === "SIGINT") Deno.exit(130); // a second Ctrl-C: do not wait
      signalled = true;
      stop.resolve(signal);
    };
    Deno.addSignalListener(signal, listener);
    return { signal, listener };
  });
  try {
    const started = performance.now();
    const server = await startServer({
      load: async () => {
        const weights = await openWeightsArgument(
          o.model.model ? await resolveModel(o.model.model) : o.model.weights,
        );
        return await createEmbedder(weights, {
          preset: o.model.preset,
          size: o.model.size,
          resize: o.model.resize,
          vitHeads: o.model.vitHeads,
          vitBlocks: o.model.vitBlocks,
          kernels: o.model.kernels,
          precision: o.model.precision,
          tune: o.model.tune,
          tuningCache: new FileTuningCache(),
          engineVersion: ENGINE,
          maxBatch: o.maxBatch,
          inFlight: o.inFlight,
          locateNonFinite: o.verbose,
        });
      },
      modelName: o.modelName,
      classifier,
      hostname: o.host,
      port: o.port,
      predictRoute: o.predictRoute,
      healthRoute: o.healthRoute,
      maxWaitMs: o.maxWaitMs,
      maxBodyBytes: o.maxBodyBytes,
      maxInstances: o.maxInstances,
      maxPixels: o.maxPixels,
      timeoutMs: o.timeoutMs,
      gcsEndpoint: o.gcsEndpoint,
      maxGcsBytes: o.maxGcsBytes,
      workers: o.workers,
      exifOrientation: o.exifOrientation,
      log: o.verbose ? (line) => console.error(`serve: ${line}`) : undefined,
    });
    info(
      `listening on ${server.url} (POST ${o.predictRoute}, GET ${o.healthRoute}); loading ${
        o.model.model ?? o.model.weights
      }`,
    );
    const loaded = await Promise.race([
      server.ready.then((model) => ({ model }), (error: unknown) => ({ error })),
      stop.promise.then(() => undefined),
    ]);
    if (loaded && "error" in loaded) {
      const code = reportError(loaded.error, o.verbose);
      await server.shutdown();
      return code;
    }
    if (loaded) {
      if (o.verbose) info(describeGpu(loaded.model.gpu));
      info(
        `ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${loaded.model.describe()}${
          classifier ? `; classifier ${classifier.name} (${classifier.classifier.heads.length} head(s))` : ""
        }; adapter ${loaded.model.gpu.adapterInfo.description}`,
      );
    }
    const signal = await stop.promise;
    info(`${signal}: no new requests; finishing ${server.stats().inFlight} request(s) in flight`);
    await server.shutdown();
    const s = server.stats();
    info(
      `stopped: ${s.instances} instance(s) in ${
        Object.values(s.statuses).reduce((a, b) => a + b, 0)
      } request(s), ${s.batches?.batches ?? 0} GPU batch(es)`,
    );
    return 0;
  } catch (e) {
    return reportError(e, o.verbose);
  } finally {
    for (const { signal, listener } of listeners) Deno.removeSignalListener(signal, listener);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
