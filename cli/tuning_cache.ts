/**
 * The tuned kernel choices of `engine/autotune.ts` kept in a JSON file of the cache directory
 * (`DERM_WEBGPU_CACHE`, else `~/.cache/derm-webgpu`, file `tuning.json`), so that a second run on an
 * adapter times nothing. Written through a temporary file and a rename; an unreadable or corrupt file is
 * treated as empty (and rewritten), never as an error: it only holds choices that can be measured again.
 * @module
 */
import type { TuningCache } from "../engine/autotune.ts";
import { cacheRoot } from "./model_cache.ts";

/** A {@linkcode TuningCache} in a JSON file. */
export class FileTuningCache implements TuningCache {
  /** The file. */
  readonly path: string;
  #entries: Map<string, string> | undefined;

  /** The cache in `path` (default: `tuning.json` in the cache directory). */
  constructor(path = `${cacheRoot()}/tuning.json`) {
    this.path = path;
  }

  async #load(): Promise<Map<string, string>> {
    if (this.#entries) return this.#entries;
    let entries = new Map<string, string>();
    try {
      const data = JSON.parse(await Deno.readTextFile(this.path));
      if (data && typeof data === "object" && !Array.isArray(data)) {
        entries = new Map(
          Object.entries(data).filter((e): e is [string, string] => typeof e[1] === "string"),
        );
      }
    } catch {
      // Missing or corrupt: start afresh; the choices are re-measured.
    }
    this.#entries = entries;
    return entries;
  }

  /** The variant recorded for `key`. */
  async get(key: string): Promise<string | undefined> {
    return (await this.#load()).get(key);
  }

  /** Records a choice and rewrites the file. */
  async set(key: string, variant: string): Promise<void> {
    const entries = await this.#load();
    entries.set(key, variant);
    const dir = this.path.slice(0, this.path.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true });
    const tmp = `${this.path}.${crypto.randomUUID()}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(Object.fromEntries(entries), null, 1) + "\n");
    await Deno.rename(tmp, this.path);
  }
}
