/**
 * The local model cache: Hugging Face models downloaded once into `~/.cache/derm-webgpu/OWNER/NAME/`
 * (`DERM_WEBGPU_CACHE` overrides the root) and made ready to load as `OWNER/NAME/model.safetensors`.
 *
 * timm repositories (`timm/resnetv2_101x3_bit.goog_in21k`) hold `model.safetensors` (and `config.json`),
 * used as is. SavedModel repositories (`google/derm-foundation`) hold `saved_model.pb` and `variables/*`,
 * converted once after the download by `cli/convert.ts`'s `convert`.
 * @module
 */
import { downloadFile, type HubFile, type HubOptions, listModelFiles } from "./hub.ts";
import { convert } from "./convert.ts";

/** Name of the ready-to-load file in a model's cache folder. */
export const READY_FILE = "model.safetensors";

/** Converts a SavedModel folder to a safetensors file (the signature of `cli/convert.ts`). */
export type SavedModelConverter = (
  src: string,
  out: string,
  options?: { dtype?: "f32" | "f16"; preset?: "derm" | "bit" },
) => Promise<void>;

/** Options of {@linkcode fetchModel} and {@linkcode resolveModel}. */
export interface FetchModelOptions extends HubOptions {
  /** Cache root (default: `DERM_WEBGPU_CACHE`, else `~/.cache/derm-webgpu`). */
  cache?: string;
  /** Download again even when the ready file exists. */
  force?: boolean;
  /** Show progress bars (default true). */
  progress?: boolean;
  /** Where progress and notes go (default stderr). */
  write?: (text: string) => void;
  /** Force a terminal (true) or plain-line (false) progress display. */
  interactive?: boolean;
  /** Attempts after a dropped connection (default 5). */
  retries?: number;
  /** Wait before the first retry in ms, doubled each time (default 1000). */
  retryDelayMs?: number;
  /** Weight dtype of a converted SavedModel (default f32). */
  dtype?: "f32" | "f16";
  /** The SavedModel converter (default: `convert` from `cli/convert.ts`). */
  convert?: SavedModelConverter;
}

/**
 * The cache root: `DERM_WEBGPU_CACHE`, else `~/.cache/derm-webgpu` (home from HOME, or USERPROFILE on
 * Windows).
 *
 * @returns The folder (not created).
 * @throws {Error} when neither the variable nor a home folder is set.
 */
export function cacheRoot(): string {
  const explicit = Deno.env.get("DERM_WEBGPU_CACHE");
  if (explicit) return explicit;
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  if (!home) throw new Error("Cannot find the model cache: set DERM_WEBGPU_CACHE or HOME");
  return `${home}/.cache/derm-webgpu`;
}

/**
 * The cache folder of a model.
 *
 * @param id `owner/name`.
 * @param cache Cache root (default {@linkcode cacheRoot}).
 * @returns `ROOT/owner/name`.
 */
export function modelCacheDir(id: string, cache?: string): string {
  return `${cache ?? cacheRoot()}/${id}`;
}

/** Hub connection settings from the environment: `HF_ENDPOINT`, `HF_TOKEN`. */
export function hubOptionsFromEnv(): HubOptions {
  return { endpoint: Deno.env.get("HF_ENDPOINT") || undefined, token: Deno.env.get("HF_TOKEN") || undefined };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** A repository path we are willing to write under the cache folder. */
function safePath(path: string): boolean {
  return path.length > 0 && !path.startsWith("/") && !path.includes("\\") &&
    path.split("/").every((p) => p !== "" && p !== "." && p !== "..");
}

/**
 * Which files of a repository make a model: `model.safetensors` (+ `config.json`) for a timm repository,
 * `saved_model.pb` + `variables/*` for a SavedModel.
 *
 * @param id For messages.
 * @param files The repository's files.
 * @returns The kind and the files to fetch.
 * @throws {Error} when the repository holds neither.
 */
export function chooseModelFiles(id: string, files: readonly HubFile[]): {
  kind: "safetensors" | "savedmodel";
  files: HubFile[];
} {
  const byPath = new Map(files.filter((f) => safePath(f.path)).map((f) => [f.path, f]));
  const model = byPath.get(READY_FILE);
  if (model) {
    return {
      kind: "safetensors",
      files: [model, byPath.get("config.json")].filter((f) => f !== undefined),
    };
  }
  const graph = byPath.get("saved_model.pb");
  if (graph) {
    const variables = [...byPath.values()].filter((f) => f.path.startsWith("variables/"));
    return { kind: "savedmodel", files: [graph, ...variables] };
  }
  throw new Error(
    `Cannot use "${id}": it has neither ${READY_FILE} (timm) nor saved_model.pb (TensorFlow SavedModel); ` +
      `files: ${files.map((f) => f.path).slice(0, 20).join(", ") || "none"}`,
  );
}

/** `cli/convert.ts`'s `convert`, with this module's lower-case dtype names. */
const defaultConverter: SavedModelConverter = async (src, out, options) => {
  await convert(src, out, { dtype: options?.dtype === "f16" ? "F16" : "F32", preset: options?.preset });
};

/**
 * Downloads a model into the cache (resuming partial files) and makes it ready to load.
 *
 * @param id `owner/name`, e.g. `google/derm-foundation` or `timm/resnetv2_101x3_bit.goog_in21k`.
 * @param options Cache, hub connection, progress, conversion.
 * @returns The path of the ready safetensors file.
 * @throws {HubError} for hub failures (not found, gated, checksum, network); {@linkcode Error} for a
 * repository without a usable model or a failed conversion.
 *
 * @example
 * ```ts
 * const path = await fetchModel("google/derm-foundation", { token: Deno.env.get("HF_TOKEN") });
 * ```
 */
export async function fetchModel(id: string, options: FetchModelOptions = {}): Promise<string> {
  const dir = modelCacheDir(id, options.cache);
  const ready = `${dir}/${READY_FILE}`;
  if (!options.force && await exists(ready)) return ready;
  const { kind, files } = chooseModelFiles(id, await listModelFiles(id, options));
  await Deno.mkdir(dir, { recursive: true });
  for (const file of files) {
    const dest = `${dir}/${file.path}`;
    if (!options.force && file.path !== READY_FILE && await exists(dest)) continue;
    await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
    await downloadFile(id, file, dest, options);
  }
  if (kind === "savedmodel") {
    const converter = options.convert ?? defaultConverter;
    options.write?.(`converting ${id} to ${READY_FILE}\n`);
    await converter(dir, ready, { dtype: options.dtype ?? "f32", preset: "derm" });
    if (!await exists(ready)) throw new Error(`Cannot convert "${id}": the converter wrote no ${ready}`);
  }
  return ready;
}

/**
 * The path of a model's ready-to-load safetensors file, downloading (and converting) it first when it is not
 * in the cache. Hub settings come from `HF_ENDPOINT` and `HF_TOKEN` unless given.
 *
 * @param id `owner/name`.
 * @param options Same as {@linkcode fetchModel}.
 * @returns The path.
 *
 * @example
 * ```ts
 * const weights = await openSafetensorsFile(await resolveModel("google/derm-foundation"));
 * ```
 */
export async function resolveModel(id: string, options: FetchModelOptions = {}): Promise<string> {
  const env = hubOptionsFromEnv();
  return await fetchModel(id, {
    ...options,
    endpoint: options.endpoint ?? env.endpoint,
    token: options.token ?? env.token,
    force: false,
  });
}
