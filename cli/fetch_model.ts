/**
 * `deno task fetch-model ID`: download a model from the Hugging Face hub into the local cache and make it
 * ready to load (a SavedModel is converted to safetensors); prints the path of the ready file on stdout.
 * @module
 */
import { parseArgs } from "node:util";
import { HubError } from "./hub.ts";
import { cacheRoot, fetchModel, type FetchModelOptions, hubOptionsFromEnv } from "./model_cache.ts";

const HELP = `deno task fetch-model: download a Derm Foundation / BiT model from the Hugging Face hub

Usage:
  deno task fetch-model [options] ID

ID is a hub model, e.g. google/derm-foundation (TensorFlow SavedModel, converted to safetensors after the
download) or timm/resnetv2_101x3_bit.goog_in21k (model.safetensors, used as is). Files go to
CACHE/ID/; the ready file is CACHE/ID/model.safetensors, printed on stdout. Partial downloads are kept as
NAME.part and resumed (HTTP Range) by the next run; sizes and SHA-256 checksums are checked against the hub.

Options:
  --cache DIR         cache root (default: $DERM_WEBGPU_CACHE, else ~/.cache/derm-webgpu)
  --endpoint URL      hub endpoint (default: $HF_ENDPOINT, else https://huggingface.co)
  --revision REV      branch, tag or commit to download (default main)
  --dtype f32|f16     weight dtype when converting a SavedModel (default f32)
  --force             download again even when the model is already in the cache
  --quiet             no progress bars
  --help              show this help

Environment:
  HF_TOKEN            access token for gated repositories such as google/derm-foundation: visit the
                      model's page, log in, accept its terms, create a read token under Settings > Access
                      Tokens, and export HF_TOKEN=<token> (it is sent to the hub only, never printed)
  HF_ENDPOINT, DERM_WEBGPU_CACHE   as --endpoint and --cache

Exit codes: 0 success, 1 download or conversion failed, 2 bad command line, 4 access denied (gated),
5 no such model.`;

/** Exit code: the repository is gated and the token is missing or refused. */
export const EXIT_GATED = 4;
/** Exit code: no such model (or file) on the hub. */
export const EXIT_NOT_FOUND = 5;

/**
 * Runs the command with `args`.
 *
 * @param args Command-line arguments.
 * @param overrides Options merged over those from the command line and environment (tests).
 * @returns The exit code.
 */
export async function main(args: string[], overrides: FetchModelOptions = {}): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        cache: { type: "string" },
        endpoint: { type: "string" },
        revision: { type: "string" },
        dtype: { type: "string" },
        force: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    });
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\nRun with --help for usage.`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const usage = (message: string) => {
    console.error(`error: ${message}\n\nRun with --help for usage.`);
    return 2;
  };
  if (positionals.length !== 1) return usage(`expected one model ID, got ${positionals.length}`);
  if (values.dtype !== undefined && values.dtype !== "f32" && values.dtype !== "f16") {
    return usage(`--dtype must be "f32" or "f16", got "${values.dtype}"`);
  }
  const id = positionals[0];
  const env = hubOptionsFromEnv();
  try {
    const path = await fetchModel(id, {
      cache: values.cache ?? cacheRoot(),
      endpoint: values.endpoint ?? env.endpoint,
      token: env.token,
      revision: values.revision,
      dtype: values.dtype as "f32" | "f16" | undefined,
      force: values.force,
      progress: !values.quiet,
      ...overrides,
    });
    console.log(path);
    return 0;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    console.error(`error: ${message}`);
    if (e instanceof HubError && e.kind === "gated") return EXIT_GATED;
    if (e instanceof HubError && e.kind === "not-found") return EXIT_NOT_FOUND;
    if (e instanceof TypeError) return 2;
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
