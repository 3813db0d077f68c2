/**
 * `.safetensors` output: tensor `embeddings` F32 [N, D]; in `__metadata__` the model facts,
 * `metadata_keys`, and `paths`, `hashes`, `metadata`, `positions` (JSON arrays as strings).
 *
 * The format puts every path in the header, before the data, so the file cannot grow in place: while the
 * run goes, embeddings are appended to `OUT.data.partial` and each row's path, hash, metadata and position
 * to `OUT.rows.partial`, one line per row of four tab-separated fields already escaped as they will appear
 * in the header; `finish()` streams the header from the rows file (one pass per array, bytes copied, no
 * parsing) and copies the data after it into `OUT.partial`, then the writer renames it. Each embedding byte
 * is written twice, whatever the number of rows.
 * @module
 */
import type { FormatDriver, FormatSetup, FormatState, FormatWriter, OutputReader } from "./output_format.ts";
import { copyInto, embeddingBytes, readAt, readInto, readRecords } from "./output_format.ts";
import type { OutputFile } from "./output_files.ts";
import { type EmbeddingRow, facts, infoFromFacts } from "./output_rows.ts";

const enc = new TextEncoder();
const COPY_CHUNK = 1 << 20;

function names(out: string) {
  return { data: `${out}.data.partial`, rows: `${out}.rows.partial`, assembled: `${out}.partial` };
}

/** `s` as it appears inside a JSON string literal (JSON.stringify's escaping, without the quotes). */
function inString(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

/** Appends bytes through one reused 1 MiB buffer. */
class Buffered {
  #file: OutputFile;
  #buffer = new Uint8Array(COPY_CHUNK);
  #used = 0;
  written = 0;

  constructor(file: OutputFile) {
    this.#file = file;
  }

  async write(bytes: Uint8Array | string): Promise<void> {
    const b = typeof bytes === "string" ? enc.encode(bytes) : bytes;
    for (let o = 0; o < b.length;) {
      const n = Math.min(b.length - o, COPY_CHUNK - this.#used);
      this.#buffer.set(b.subarray(o, o + n), this.#used);
      this.#used += n;
      o += n;
      if (this.#used === COPY_CHUNK) await this.flush();
    }
    this.written += b.length;
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    await this.#file.append(this.#buffer.subarray(0, this.#used));
    this.#used = 0;
  }
}

/** One row of the rows file: path, hash, metadata as escaped JSON inside a string, position; tabs between. */
function rowLine(r: EmbeddingRow): string {
  return [
    inString(JSON.stringify(r.path)),
    inString(JSON.stringify(r.hash)),
    inString(JSON.stringify(r.metadata)),
    r.position,
  ]
    .join("\t") + "\n";
}

/** Writes field `k` of every line of the rows file, comma-separated, to `head`. */
async function copyField(path: string, length: number, k: number, head: Buffered): Promise<void> {
  const source = await Deno.open(path, { read: true });
  const chunk = new Uint8Array(COPY_CHUNK);
  const comma = enc.encode(",");
  let field = 0;
  let items = 0;
  let open = false; // this item's separator is written (the field spans two chunks)
  const part = async (bytes: Uint8Array) => {
    if (!open && items > 0) await head.write(comma);
    open = true;
    await head.write(bytes);
  };
  try {
    for (let o = 0; o < length; o += COPY_CHUNK) {
      const bytes = await readInto(source, o, chunk.subarray(0, Math.min(COPY_CHUNK, length - o)));
      let start = 0;
      for (let i = 0; i < bytes.length; i++) {
        const b = bytes[i];
        if (b !== 9 && b !== 10) continue;
        if (field === k) {
          await part(bytes.subarray(start, i));
          items++;
          open = false;
        }
        field = b === 10 ? 0 : field + 1;
        start = i + 1;
      }
      if (field === k && start < bytes.length) await part(bytes.subarray(start));
    }
  } finally {
    source.close();
  }
}

class SafetensorsWriter implements FormatWriter {
  #setup: FormatSetup;
  #data: OutputFile;
  #rowsFile: OutputFile;
  #rows: number;

  constructor(setup: FormatSetup, data: OutputFile, rowsFile: OutputFile, rows: number) {
    this.#setup = setup;
    this.#data = data;
    this.#rowsFile = rowsFile;
    this.#rows = rows;
  }

  async append(rows: readonly EmbeddingRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#data.append(embeddingBytes(rows, this.#setup.info.embeddingSize));
    await this.#rowsFile.append(enc.encode(rows.map(rowLine).join("")));
    this.#rows += rows.length;
  }

  async sync(): Promise<FormatState> {
    await this.#data.sync();
    await this.#rowsFile.sync();
    return { rows: this.#rows, data: this.#data.length, rowsBytes: this.#rowsFile.length };
  }

  async committed(): Promise<void> {}

  async finish(): Promise<[string, string][]> {
    await this.sync();
    const { out, info, metadataKeys, fs } = this.#setup;
    const n = names(out);
    const d = info.embeddingSize;
    const dataBytes = this.#rows * d * 4;
    const file = await fs.create(n.assembled);
    try {
      await file.append(new Uint8Array(8)); // header length, patched below
      const head = new Buffered(file);
      const meta = Object.entries(facts(info)).map(([k, v]) =>
        `${JSON.stringify(k)}:${JSON.stringify(String(v))}`
      );
      meta.push(`"metadata_keys":${JSON.stringify(JSON.stringify(metadataKeys))}`);
      await head.write(`{"__metadata__":{${meta.join(",")}`);
      for (const [k, key] of ["paths", "hashes", "metadata", "positions"].entries()) {
        await head.write(`,"${key}":"[`);
        await copyField(n.rows, this.#rowsFile.length, k, head);
        await head.write(`]"`);
      }
      await head.write(
        `},"embeddings":{"dtype":"F32","shape":[${this.#rows},${d}],"data_offsets":[0,${dataBytes}]}}`,
      );
      await head.flush();
      const pad = " ".repeat((8 - ((8 + head.written) % 8)) % 8); // data starts 8-byte aligned
      await head.write(pad);
      await head.flush();
      const headerLength = head.written;
      const length = new Uint8Array(8);
      new DataView(length.buffer).setBigUint64(0, BigInt(headerLength), true);
      await file.writeAt(0, length);
      await copyInto(file, n.data, dataBytes);
      await file.sync();
    } finally {
      file.close();
    }
    return [[n.assembled, out]];
  }

  close(): void {
    this.#data.close();
    this.#rowsFile.close();
  }
}

/** The `.safetensors` format. */
export const safetensorsDriver: FormatDriver = {
  async create(setup) {
    const n = names(setup.out);
    return new SafetensorsWriter(setup, await setup.fs.create(n.data), await setup.fs.create(n.rows), 0);
  },

  async resume(setup, state) {
    const n = names(setup.out);
    const data = await setup.fs.open(n.data);
    const rows = await setup.fs.open(n.rows);
    if (data.length !== state.data) await data.truncate(state.data);
    if (rows.length !== state.rowsBytes) await rows.truncate(state.rowsBytes);
    return new SafetensorsWriter(setup, data, rows, state.rows);
  },

  stagingFiles(out) {
    return Object.values(names(out));
  },

  async read(path) {
    const file = await Deno.open(path, { read: true });
    let header: Record<string, any>;
    let start: number;
    try {
      const n = Number(new DataView((await readAt(file, 0, 8)).buffer).getBigUint64(0, true));
      header = JSON.parse(new TextDecoder().decode(await readAt(file, 8, n)));
      start = 8 + n;
    } catch (e) {
      throw new SyntaxError(`Cannot read "${path}": ${(e as Error).message}`, { cause: e });
    } finally {
      file.close();
    }
    const t = header.embeddings;
    const m = header.__metadata__ ?? {};
    if (t?.dtype !== "F32" || t.shape?.length !== 2) {
      throw new SyntaxError(`Cannot read "${path}": expected tensor "embeddings" F32 [N, D]`);
    }
    const [count, d] = t.shape as [number, number];
    const paths: string[] = JSON.parse(m.paths ?? "[]");
    const hashes: string[] = JSON.parse(m.hashes ?? "[]");
    const metadata: Record<string, string>[] = JSON.parse(m.metadata ?? "[]");
    const positions: number[] = JSON.parse(m.positions ?? "[]");
    if (paths.length !== count || positions.length !== count) {
      throw new SyntaxError(
        `Cannot read "${path}": ${count} rows but ${paths.length} paths, ${positions.length} positions`,
      );
    }
    const reader: OutputReader = {
      info: infoFromFacts(m, path),
      metadataKeys: m.metadata_keys === undefined ? undefined : JSON.parse(m.metadata_keys),
      rows: count,
      async *read() {
        const file = await Deno.open(path, { read: true });
        try {
          let i = 0;
          for await (const bytes of readRecords(file, start + t.data_offsets[0], 4 * d, count)) {
            yield {
              path: paths[i],
              hash: hashes[i],
              position: positions[i],
              metadata: metadata[i] ?? {},
              embedding: new Float32Array(bytes.slice().buffer),
            };
            i++;
          }
        } finally {
          file.close();
        }
      },
    };
    return reader;
  },
};
