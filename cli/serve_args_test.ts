import assert from "node:assert/strict";
import { HELP, parseServeArgs, SERVE_ENV, SERVE_FLAGS, type ServeArgs } from "./serve_args.ts";

function parse(args: string[], env: Record<string, string> = {}): ServeArgs {
  const got = parseServeArgs(args, (name) => env[name]);
  assert.notEqual(got, "help");
  return got as ServeArgs;
}

Deno.test("parseServeArgs() takes the port and routes from Vertex AI's AIP_* variables, flags winning", () => {
  const plain = parse(["--weights", "w.safetensors"]);
  assert.equal(plain.port, 8080);
  assert.equal(plain.predictRoute, "/predict");
  assert.equal(plain.healthRoute, "/health");
  assert.equal(plain.host, "0.0.0.0");
  const env = {
    AIP_HTTP_PORT: "7080",
    AIP_PREDICT_ROUTE: "/v1/endpoints/1:predict",
    AIP_HEALTH_ROUTE: "/v1/health",
  };
  const vertex = parse(["--weights", "w"], env);
  assert.deepEqual([vertex.port, vertex.predictRoute, vertex.healthRoute], [
    7080,
    "/v1/endpoints/1:predict",
    "/v1/health",
  ]);
  const flags = parse(
    ["--weights", "w", "--port", "9000", "--predict-route", "/p", "--health-route", "/h"],
    env,
  );
  assert.deepEqual([flags.port, flags.predictRoute, flags.healthRoute], [9000, "/p", "/h"]);
  assert.equal(parse(["--weights", "w", "--port", "0"], env).port, 0);
});

Deno.test("parseServeArgs() reads DERM_WEIGHTS, DERM_CLASSIFIER and STORAGE_EMULATOR_HOST when the flags are absent", () => {
  const env = {
    DERM_WEIGHTS: "/models/derm.safetensors",
    DERM_CLASSIFIER: "/models/c.json",
    STORAGE_EMULATOR_HOST: "localhost:4443",
  };
  const fromEnv = parse([], env);
  assert.equal(fromEnv.model.weights, "/models/derm.safetensors");
  assert.equal(fromEnv.modelName, "/models/derm.safetensors");
  assert.equal(fromEnv.classifier, "/models/c.json");
  assert.equal(fromEnv.gcsEndpoint, "http://localhost:4443");
  const flags = parse(
    [
      "--weights",
      "procedural:tiny-derm",
      "--classifier",
      "x.json",
      "--gcs-endpoint",
      "https://gcs.example/",
      "--model-name",
      "n",
    ],
    env,
  );
  assert.equal(flags.model.weights, "procedural:tiny-derm");
  assert.equal(flags.modelName, "n");
  assert.equal(flags.classifier, "x.json");
  assert.equal(flags.gcsEndpoint, "https://gcs.example");
  // --model instead of --weights: DERM_WEIGHTS is not used.
  const hub = parse(["--model", "google/derm-foundation"], env);
  assert.equal(hub.model.weights, "");
  assert.equal(hub.modelName, "google/derm-foundation");
  assert.equal(parse(["--weights", "w"]).gcsEndpoint, "https://storage.googleapis.com");
});

Deno.test("parseServeArgs() reads the limits and batching flags", () => {
  const o = parse([
    "--weights=w",
    "--max-batch=4",
    "--in-flight=3",
    "--max-wait-ms=0",
    "--max-body-bytes=1000",
    "--max-instances=2",
    "--max-pixels=3",
    "--max-gcs-bytes=5",
    "--timeout-ms=6",
    "--workers=0",
    "--exif-orientation",
    "--size=64",
    "--preset=derm",
  ]);
  assert.deepEqual(
    [
      o.maxBatch,
      o.maxWaitMs,
      o.maxBodyBytes,
      o.maxInstances,
      o.maxPixels,
      o.maxGcsBytes,
      o.timeoutMs,
      o.workers,
    ],
    [4, 0, 1000, 2, 3, 5, 6, 0],
  );
  assert.equal(o.inFlight, 3);
  assert.equal(o.exifOrientation, true);
  assert.equal(o.model.size, 64);
  assert.equal(parse(["--weights", "w"]).maxBatch, undefined);
  assert.equal(parseServeArgs(["--help"], () => undefined), "help");
});

Deno.test("parseServeArgs() refuses bad flags and variables, saying which", () => {
  const refuses = (args: string[], message: RegExp, env: Record<string, string> = {}) =>
    assert.throws(() => parseServeArgs(args, (n) => env[n]), message, args.join(" "));
  refuses([], /^RangeError: --weights \(or DERM_WEIGHTS\) or --model is required$/);
  refuses(["--weights", "w"], /AIP_HTTP_PORT must be an integer from 1 to 65535, got "http"/, {
    AIP_HTTP_PORT: "http",
  });
  refuses(["--weights", "w", "--port", "70000"], /--port must be an integer from 0 to 65535, got "70000"/);
  refuses(["--weights", "w"], /AIP_PREDICT_ROUTE must be a path starting with \/, got "predict"/, {
    AIP_PREDICT_ROUTE: "predict",
  });
  refuses(
    ["--weights", "w", "--health-route", "/predict"],
    /the predict and health routes must differ, both are "\/predict"/,
  );
  refuses(["--weights", "w", "--max-batch", "0"], /--max-batch must be an integer from 1 to 1024, got "0"/);
  refuses(["--weights", "w", "--in-flight", "9"], /--in-flight must be an integer from 1 to 8, got "9"/);
  refuses(["--weights", "w", "--timeout-ms", "soon"], /--timeout-ms must be an integer/);
  refuses(
    ["--weights", "w", "--gcs-endpoint", "storage.googleapis.com"],
    /--gcs-endpoint must be an http\(s\) URL/,
  );
  refuses(["--weights", "w", "--preset", "tf"], /--preset must be one of derm, bit, imagenet, got "tf"/);
  refuses(["--weights", "w", "image.png"], /expected no positional arguments, got "image\.png"/);
  refuses(["--weights", "w", "--batch", "4"], /Unknown option '--batch'/);
});

Deno.test("serve --help and the README document every flag and environment variable", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const serving = readme.slice(readme.indexOf("## Serving"));
  assert.ok(readme.includes("## Serving"), "README has no Serving section");
  for (const flag of Object.keys(SERVE_FLAGS)) {
    assert.match(HELP, new RegExp(`^  --${flag}\\b`, "m"), `--help lacks --${flag}`);
    assert.match(serving, new RegExp(`--${flag}\\b`), `README's Serving section lacks --${flag}`);
  }
  for (const name of SERVE_ENV) {
    assert.match(HELP, new RegExp(`\\b${name}\\b`), `--help lacks ${name}`);
    assert.match(serving, new RegExp(`\\b${name}\\b`), `README's Serving section lacks ${name}`);
  }
});
