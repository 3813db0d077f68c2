/**
 * The files `embed` and `merge` write, behind one small interface so that every byte is counted and a
 * test can stop a writer between (or in the middle of) any two operations, as a SIGKILL would.
 *
 * A file is written at its end (appends), with rare writes at an offset (a .npy header's row count);
 * `sync()` flushes what was written since the last sync. Reads do not go through here.
 * @module
 */

/** A file being written. */
export interface OutputFile {
  /** Its path. */
  readonly path: string;
  /** Its length in bytes (appends go there). */
  readonly length: number;
  /** Appends bytes at the end. */
  append(bytes: Uint8Array): Promise<void>;
  /** Overwrites bytes at `offset` (within the file). */
  writeAt(offset: number, bytes: Uint8Array): Promise<void>;
  /** Cuts the file to `length` bytes. */
  truncate(length: number): Promise<void>;
  /** Flushes the data written since the last sync to disk. */
  sync(): Promise<void>;
  /** Closes the handle. */
  close(): void;
}

/** A mutating operation, as seen by a {@linkcode FaultHook}. */
export interface FileOp {
  readonly kind: "create" | "open" | "append" | "writeAt" | "truncate" | "sync" | "rename" | "remove";
  readonly path: string;
  /** Bytes to write (append, writeAt). */
  readonly size?: number;
}

/**
 * Called before every mutating operation: throwing stops before the operation; returning a number for
 * a write lets only that many bytes through, after which the write throws (a torn write).
 */
export type FaultHook = (op: FileOp) => number | undefined;

/** Where output files are made, renamed and removed. */
export interface OutputFs {
  /** Creates `path`, or empties it. */
  create(path: string): Promise<OutputFile>;
  /** Opens an existing `path` to continue it (NotFound when it does not exist). */
  open(path: string): Promise<OutputFile>;
  /** Renames `from` to `to`, replacing `to`. */
  rename(from: string, to: string): Promise<void>;
  /** Removes `path`; a missing file is no error. */
  remove(path: string): Promise<void>;
  /** Bytes written through this object so far. */
  readonly bytesWritten: number;
}

/** Thrown by a torn write that a {@linkcode FaultHook} asked for. */
export class SimulatedCrash extends Error {
  constructor(op: FileOp) {
    super(`simulated crash during ${op.kind} of "${op.path}"`);
    this.name = "SimulatedCrash";
  }
}

/** {@linkcode OutputFs} on the local file system (Deno). */
export class DenoOutputFs implements OutputFs {
  #fault?: FaultHook;
  #durable: boolean;
  #open = new Set<Deno.FsFile>();
  bytesWritten = 0;

  /**
   * @param options `fault`: a hook called before every mutating operation (tests); `durable: false`
   * makes `sync()` a no-op (tests that kill processes, not machines).
   */
  constructor(options: { fault?: FaultHook; durable?: boolean } = {}) {
    this.#fault = options.fault;
    this.#durable = options.durable ?? true;
  }

  /** Whether syncs reach the disk. */
  get durable(): boolean {
    return this.#durable;
  }

  /** Runs the hook; returns how many bytes of a write may go through. */
  check(op: FileOp): number | undefined {
    return this.#fault?.(op);
  }

  async create(path: string): Promise<OutputFile> {
    this.check({ kind: "create", path });
    const file = await Deno.open(path, { read: true, write: true, create: true, truncate: true });
    this.#open.add(file);
    return new DenoOutputFile(this, path, file, 0);
  }

  async open(path: string): Promise<OutputFile> {
    this.check({ kind: "open", path });
    const file = await Deno.open(path, { read: true, write: true });
    this.#open.add(file);
    const { size } = await file.stat();
    return new DenoOutputFile(this, path, file, size);
  }

  async rename(from: string, to: string): Promise<void> {
    this.check({ kind: "rename", path: from });
    await Deno.rename(from, to);
  }

  async remove(path: string): Promise<void> {
    this.check({ kind: "remove", path });
    await Deno.remove(path).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  /** Forgets a closed handle. */
  released(file: Deno.FsFile): void {
    this.#open.delete(file);
  }

  /** Closes every handle still open (after a simulated crash, as the process's exit would). */
  closeAll(): void {
    for (const f of this.#open) {
      try {
        f.close();
      } catch { /* already closed */ }
    }
    this.#open.clear();
  }
}

class DenoOutputFile implements OutputFile {
  #fs: DenoOutputFs;
  #file: Deno.FsFile;
  #dirty = false;
  #length: number;
  readonly path: string;

  constructor(fs: DenoOutputFs, path: string, file: Deno.FsFile, length: number) {
    this.#fs = fs;
    this.path = path;
    this.#file = file;
    this.#length = length;
  }

  get length(): number {
    return this.#length;
  }

  async #write(offset: number, bytes: Uint8Array, kind: "append" | "writeAt"): Promise<void> {
    const op = { kind, path: this.path, size: bytes.length } as const;
    const allowed = this.#fs.check(op);
    const n = allowed === undefined ? bytes.length : Math.min(allowed, bytes.length);
    await this.#file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < n) done += await this.#file.write(bytes.subarray(done, n));
    this.#fs.bytesWritten += n;
    this.#dirty = true;
    this.#length = Math.max(this.#length, offset + n);
    if (n < bytes.length) throw new SimulatedCrash(op);
  }

  append(bytes: Uint8Array): Promise<void> {
    return this.#write(this.#length, bytes, "append");
  }

  writeAt(offset: number, bytes: Uint8Array): Promise<void> {
    if (offset + bytes.length > this.#length) {
      throw new RangeError(
        `Cannot write "${this.path}" at ${offset}: expected a range within its ${this.#length} bytes, got ${bytes.length}`,
      );
    }
    return this.#write(offset, bytes, "writeAt");
  }

  async truncate(length: number): Promise<void> {
    this.#fs.check({ kind: "truncate", path: this.path });
    await this.#file.truncate(length);
    this.#length = length;
    this.#dirty = true;
  }

  async sync(): Promise<void> {
    if (!this.#dirty) return;
    this.#fs.check({ kind: "sync", path: this.path });
    if (this.#fs.durable) await this.#file.syncData();
    this.#dirty = false;
  }

  close(): void {
    this.#fs.released(this.#file);
    this.#file.close();
  }
}

/**
 * Writes `bytes` to a temporary file beside `path`, flushes it, then renames it over `path`: a reader
 * sees the old file or the new one, never a partial one.
 */
export async function writeAtomically(fs: OutputFs, path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    const file = await fs.create(tmp);
    try {
      await file.append(bytes);
      await file.sync();
    } finally {
      file.close();
    }
    await fs.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`Cannot write "${path}": ${(e as Error).message}`, { cause: e });
  }
}
