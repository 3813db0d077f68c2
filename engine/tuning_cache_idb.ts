/**
 * The tuned kernel choices of `engine/autotune.ts` kept in the browser's IndexedDB (database
 * `derm-webgpu`, object store `tuning`), so that a page reloaded on the same adapter times nothing. Any
 * IndexedDB failure (private browsing, quota) falls back to memory for the session: the choices can
 * always be measured again.
 *
 * This module is browser compatible.
 * @module
 */
import { MemoryTuningCache, type TuningCache } from "./autotune.ts";

const DATABASE = "derm-webgpu";
const STORE = "tuning";

// The part of IndexedDB used here, typed structurally: Deno's own types have no IndexedDB.
interface Req<T> {
  result: T;
  error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface Store {
  get(key: string): Req<unknown>;
  put(value: string, key: string): Req<unknown>;
}
interface Db {
  transaction(store: string, mode: "readonly" | "readwrite"): { objectStore(name: string): Store };
  createObjectStore(name: string): unknown;
}
/** The `indexedDB` factory (a browser's global). */
export interface IdbFactory {
  open(name: string, version: number): Req<Db> & { onupgradeneeded: (() => void) | null };
}

function request<T>(r: Req<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** A {@linkcode TuningCache} in IndexedDB, falling back to memory where IndexedDB is unavailable. */
export class IndexedDbTuningCache implements TuningCache {
  #db: Promise<Db | undefined>;
  #memory = new MemoryTuningCache();

  /** Opens (or creates) the database. */
  constructor(factory: IdbFactory | undefined = (globalThis as { indexedDB?: IdbFactory }).indexedDB) {
    this.#db = (async () => {
      if (!factory) return undefined;
      try {
        const open = factory.open(DATABASE, 1);
        open.onupgradeneeded = () => open.result.createObjectStore(STORE);
        return await request(open);
      } catch {
        return undefined;
      }
    })();
  }

  /** The variant recorded for `key`. */
  async get(key: string): Promise<string | undefined> {
    const db = await this.#db;
    if (!db) return this.#memory.get(key);
    try {
      const value = await request(db.transaction(STORE, "readonly").objectStore(STORE).get(key));
      return typeof value === "string" ? value : undefined;
    } catch {
      return this.#memory.get(key);
    }
  }

  /** Records a choice. */
  async set(key: string, variant: string): Promise<void> {
    this.#memory.set(key, variant);
    const db = await this.#db;
    if (!db) return;
    try {
      await request(db.transaction(STORE, "readwrite").objectStore(STORE).put(variant, key));
    } catch {
      // Kept in memory only.
    }
  }
}
