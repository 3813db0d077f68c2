/**
 * The output side of `deno task embed`: rows go to the output in input order as batches finish, each batch
 * committed (`output_writer.ts`), and `--resume` picks up what an earlier run left.
 *
 * How a run resumes, by what it finds:
 * - the commit log of a run with the same header (model, inputs, shard, columns): the committed rows stay
 *   where they are ("in place"); the decoder checks each one's SHA-256 and embedding continues after the
 *   last of them. Should a committed row turn out stale (its file changed or now fails) or an image that
 *   failed before now embed, rows would have to be inserted: the committed part is then finished, read back
 *   and the run starts a new file reusing it ("rebuilt"), as below.
 * - a finished output, or the log of a run over other inputs: its rows are copied to a store beside the
 *   output (`OUT.resume-store.partial`, float32 rows) and the run writes a new file, taking each row whose
 *   path and SHA-256 still match from the store ("rebuilt").
 * Either way the result is the file an uninterrupted run writes. A run of another model, preset, input
 * size or embedding size is refused.
 *
 * Memory: the rows in flight, a hash per input known from before, failures; never all embeddings.
 * @module
 */
import { resolve } from "node:path";
import { DenoOutputFs, type OutputFile, type OutputFs, writeAtomically } from "./output_files.ts";
import type { EmbeddingRow } from "./output_rows.ts";
import { openOutputReader } from "./outputs.ts";
import { readAt } from "./output_format.ts";
import {
  type CommitRecord,
  completeFinish,
  discardPartial,
  errorsPath,
  type Failure,
  type OutputHeader,
  OutputWriter,
} from "./output_writer.ts";
import { readCommitLog } from "./commit_log.ts";

/** One image of this run (of this shard): as given, with its position in the whole input order. */
export interface RunInput {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly position: number;
}

/** Options of {@linkcode EmbedOutput.open}. */
export interface EmbedOutputOptions {
  readonly out: string;
  readonly header: OutputHeader;
  /** This run's images, in order. */
  readonly inputs: readonly RunInput[];
  /** Keep what an earlier run wrote. */
  readonly resume: boolean;
  readonly fs?: OutputFs;
}

/** How the output was started. */
export type ResumeMode = "fresh" | "in place" | "rebuilt";

type Resolution = { kind: "row"; row: EmbeddingRow } | { kind: "kept" } | { kind: "none" };

/** A float32 row store on disk, for rows reused from an earlier file. */
class RowStore {
  #file: OutputFile;
  #d: number;
  #reader?: Deno.FsFile;
  /** Resolved path → row index and hash. */
  readonly index = new Map<string, { k: number; hash: string }>();
  count = 0;

  constructor(file: OutputFile, d: number) {
    this.#file = file;
    this.#d = d;
  }

  async add(rows: readonly EmbeddingRow[]): Promise<void> {
    const bytes = new Float32Array(rows.length * this.#d);
    rows.forEach((r, i) => {
      bytes.set(r.embedding, i * this.#d);
      this.index.set(resolve(r.path), { k: this.count + i, hash: r.hash });
    });
    await this.#file.append(new Uint8Array(bytes.buffer));
    this.count += rows.length;
  }

  async get(k: number): Promise<Float32Array> {
    this.#reader ??= await Deno.open(this.#file.path, { read: true });
    const bytes = await readAt(this.#reader, k * 4 * this.#d, 4 * this.#d);
    return new Float32Array(bytes.buffer);
  }

  close(): void {
    this.#reader?.close();
    this.#file.close();
  }
}

/** Reused rows per commit when no embedded batch comes to commit them sooner. */
const KEPT_PER_COMMIT = 64;

/** The facts whose difference makes a resume impossible, with how they are named in messages. */
const IDENTITY = [
  ["model", (h: OutputHeader) => h.info.model],
  ["preset", (h: OutputHeader) => h.info.preset],
  ["input_size", (h: OutputHeader) => h.info.size],
  ["embedding_size", (h: OutputHeader) => h.info.embeddingSize],
  ["precision", (h: OutputHeader) => h.info.precision ?? "f32"],
] as const;

/** `embed`'s output while it runs. */
export class EmbedOutput {
  #o: EmbedOutputOptions;
  #fs: OutputFs;
  #mode: ResumeMode = "fresh";
  #writer?: OutputWriter;
  #store?: RowStore;
  /** In place: local index → hash of the committed row; rebuilt: from the store by path. */
  #committed = new Map<number, string>();
  /** In place: the largest position among committed rows (a new row before it forces a rebuild). */
  #lastCommitted = -1;
  #failures = new Map<number, Failure>();
  /** Positions that failed in this run (the decoder runs ahead, so some lie beyond the cursor). */
  #failedNow = new Set<number>();
  #pendingFailures: Failure[] = [];
  #resolved = new Map<number, Resolution>();
  /** Rows resolved in order, not yet committed (kept rows wait for a batch or {@linkcode KEPT_PER_COMMIT}). */
  #pending: EmbeddingRow[] = [];
  #cursor = 0;
  #kept = 0;

  private constructor(o: EmbedOutputOptions) {
    this.#o = o;
    this.#fs = o.fs ?? new DenoOutputFs();
  }

  /** Bytes written to the output's files so far (commit log, staging and store included). */
  get bytesWritten(): number {
    return this.#fs.bytesWritten;
  }

  /** How the output was started (it becomes "rebuilt" if rows must be inserted into a resumed file). */
  get mode(): ResumeMode {
    return this.#mode;
  }

  /** Rows reused from an earlier run. */
  get kept(): number {
    return this.#kept;
  }

  get #storePath(): string {
    return `${this.#o.out}.resume-store.partial`;
  }

  /**
   * Prepares the output: afresh, or from what an earlier run left when `resume`.
   *
   * @throws {TypeError} When the earlier output was made with another model, preset or size.
   */
  static async open(o: EmbedOutputOptions): Promise<EmbedOutput> {
    const self = new EmbedOutput(o);
    await self.#fs.remove(self.#storePath);
    if (!o.resume) {
      await discardPartial(self.#fs, o.out);
      return self;
    }
    const positions = new Map(o.inputs.map((input, i) => [input.position, i]));
    const added = new Map<number, string>();
    const failures = new Map<number, Failure>();
    const log = await readCommitLog<OutputHeader, CommitRecord>(o.out, (record) => {
      for (const [p, hash] of record.a ?? []) {
        added.set(p, hash);
        failures.delete(p);
      }
      for (const f of record.f ?? []) failures.set(f.position, f);
    });
    if (log) {
      self.#checkIdentity(log.header);
      const same = JSON.stringify(log.header) === JSON.stringify(o.header);
      if (log.last?.done) {
        await completeFinish(self.#fs, o.out, log.last);
      } else if (log.last && same) {
        self.#writer = await OutputWriter.resume(self.#fs, o.out, log);
        self.#mode = "in place";
        for (const [p, hash] of added) {
          self.#committed.set(positions.get(p)!, hash);
          self.#lastCommitted = Math.max(self.#lastCommitted, p);
        }
        for (const [p, f] of failures) self.#failures.set(p, f);
        return self;
      } else if (log.last) {
        // Another run's partial file: finish it, then reuse its rows.
        const old = await OutputWriter.resume(self.#fs, o.out, log);
        await old.finish();
      } else {
        await discardPartial(self.#fs, o.out);
      }
    }
    await self.#rebuildFrom(o.out);
    return self;
  }

  #checkIdentity(header: OutputHeader): void {
    for (const [name, get] of IDENTITY) {
      if (String(get(header)) !== String(get(this.#o.header))) {
        throw new TypeError(
          `Cannot resume "${this.#o.out}": it was made with ${name} "${get(header)}", this run uses ${
            get(this.#o.header)
          }`,
        );
      }
    }
  }

  /** Copies the rows of the finished `path` (if any) into the store; the output restarts afresh. */
  async #rebuildFrom(path: string): Promise<void> {
    let reader;
    try {
      reader = await openOutputReader(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    const info = reader.info;
    this.#checkIdentity({ ...this.#o.header, info });
    this.#store = new RowStore(await this.#fs.create(this.#storePath), info.embeddingSize);
    let chunk: EmbeddingRow[] = [];
    for await (const row of reader.read()) {
      chunk.push(row);
      if (chunk.length === 256) {
        await this.#store.add(chunk);
        chunk = [];
      }
    }
    await this.#store.add(chunk);
    this.#mode = "rebuilt";
    await discardPartial(this.#fs, this.#o.out);
  }

  /** The SHA-256 of input `i`'s row from an earlier run (the decoder skips the image when it matches). */
  knownHash(i: number): string | undefined {
    if (this.#mode === "in place") return this.#committed.get(i);
    return this.#store?.index.get(resolve(this.#o.inputs[i].path))?.hash;
  }

  /** The decoder found input `i` unchanged: its earlier row stands. */
  async keep(i: number): Promise<void> {
    this.#kept++;
    this.#resolved.set(i, { kind: "kept" });
    await this.#flush(false);
  }

  /** Input `i` failed (recorded with the next commit, and in `OUT.errors.jsonl` at the end). */
  async fail(i: number, hash: string, reason: string): Promise<void> {
    const input = this.#o.inputs[i];
    const f: Failure = { position: input.position, path: input.path, hash, reason };
    this.#failures.set(input.position, f);
    this.#failedNow.add(input.position);
    this.#pendingFailures.push(f);
    this.#resolved.set(i, { kind: "none" });
    await this.#flush(false);
  }

  /** Embedded rows of one batch: `index` is the input's index in this run. */
  async add(rows: readonly { index: number; hash: string; embedding: Float32Array }[]): Promise<void> {
    for (const { index, hash, embedding } of rows) {
      const input = this.#o.inputs[index];
      this.#resolved.set(index, {
        kind: "row",
        row: { path: input.path, hash, metadata: input.metadata, position: input.position, embedding },
      });
    }
    await this.#flush(true);
  }

  /**
   * Moves the rows resolved in input order to the pending batch, and commits it when `force` or when
   * enough reused rows wait.
   */
  async #flush(force: boolean): Promise<void> {
    while (this.#resolved.has(this.#cursor)) {
      const i = this.#cursor;
      const r = this.#resolved.get(i)!;
      const input = this.#o.inputs[i];
      if (this.#mode === "in place") {
        const committed = this.#committed.has(i);
        if ((committed && r.kind !== "kept") || (r.kind === "row" && input.position <= this.#lastCommitted)) {
          // A committed row is stale, or a row must go before committed ones: start a new file.
          await this.#switchToRebuilt();
          continue; // this index again, now rebuilt
        }
        if (r.kind === "row") {
          this.#pending.push(r.row);
          this.#failures.delete(input.position);
        }
      } else if (r.kind === "row") this.#pending.push(r.row);
      else if (r.kind === "kept") this.#pending.push(await this.#storedRow(i));
      this.#resolved.delete(i);
      this.#cursor++;
    }
    if (force || this.#pending.length >= KEPT_PER_COMMIT) await this.#commit();
  }

  /** Input `i`'s row from the store. */
  async #storedRow(i: number): Promise<EmbeddingRow> {
    const input = this.#o.inputs[i];
    const known = this.#store!.index.get(resolve(input.path))!;
    return {
      path: input.path,
      hash: known.hash,
      metadata: input.metadata,
      position: input.position,
      embedding: await this.#store!.get(known.k),
    };
  }

  async #commit(): Promise<void> {
    const rows = this.#pending;
    if (rows.length === 0 && (this.#pendingFailures.length === 0 || !this.#writer)) return;
    this.#writer ??= await OutputWriter.create(this.#fs, this.#o.out, this.#o.header);
    await this.#writer.append(rows, this.#pendingFailures);
    this.#pending = [];
    this.#pendingFailures = [];
  }

  /** In place → rebuilt: finish the committed part, reuse its rows from the store, replay what was kept. */
  async #switchToRebuilt(): Promise<void> {
    // Nothing is pending here: rows before the one that forces this would have forced it themselves.
    await this.#writer!.finish();
    this.#writer = undefined;
    await this.#rebuildFrom(this.#o.out);
    // Failures of this run stand; those of the earlier run not yet retried are dropped (retried as they come).
    this.#pendingFailures = [...this.#failures.values()].filter((f) => this.#failedNow.has(f.position))
      .sort((a, b) => a.position - b.position);
    this.#failures = new Map(this.#pendingFailures.map((f) => [f.position, f]));
    for (let i = 0; i < this.#cursor; i++) {
      if (!this.#committed.has(i)) continue;
      this.#pending.push(await this.#storedRow(i));
      if (this.#pending.length >= KEPT_PER_COMMIT) await this.#commit();
    }
    this.#committed.clear();
    this.#lastCommitted = -1;
  }

  /** The errors file's text: failures in input order. */
  #errorsText(): string {
    return [...this.#failures.values()].sort((a, b) => a.position - b.position)
      .map((f) =>
        JSON.stringify({ path: f.path, hash: f.hash, position: f.position, reason: f.reason }) + "\n"
      )
      .join("");
  }

  /**
   * Ends the run: the output is finished and renamed into place, with `OUT.errors.jsonl` when images
   * failed. When no row was ever written, nothing is.
   *
   * @returns Rows in the output.
   */
  async finish(): Promise<number> {
    await this.#flush(true);
    const rows = this.#writer?.rows ?? 0;
    if (this.#writer) {
      await this.#writer.finish(this.#errorsText());
      this.#writer = undefined;
    }
    this.#closeStore();
    await this.#fs.remove(this.#storePath);
    return rows;
  }

  /** Stops early (`--strict`): what was committed stays for `--resume`; `OUT.errors.jsonl` says why. */
  async stop(): Promise<void> {
    await this.#flush(true);
    this.#writer?.close();
    this.#writer = undefined;
    this.#closeStore();
    const text = this.#errorsText();
    if (text !== "") {
      await writeAtomically(this.#fs, errorsPath(this.#o.out), new TextEncoder().encode(text));
    }
  }

  #closeStore(): void {
    this.#store?.close();
    this.#store = undefined;
  }

  /** Closes files without finishing (after an error). */
  close(): void {
    this.#writer?.close();
    this.#closeStore();
  }
}
