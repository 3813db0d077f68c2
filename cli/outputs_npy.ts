/**
 * `.npy` output, appended as it goes: `OUT` float32 [N, D] (a 128-byte header whose row count is
 * rewritten in place at every commit and at the end), `OUT.paths.txt` one path per line, and `OUT.json`:
 * the model facts, the metadata keys and one object per row (path, hash, position, metadata), each row on
 * its own line (`cli/npy_sidecar.ts`) so that the file can be appended to and read back line by line.
 * @module
 */
import type { FormatDriver, FormatSetup, FormatState, FormatWriter, OutputReader } from "./output_format.ts";
import { embeddingBytes, readAt, readRecords } from "./output_format.ts";
import type { OutputFile } from "./output_files.ts";
import { type EmbeddingRow, infoFromFacts } from "./output_rows.ts";
import { NPY_SIDECAR_END, npySidecarHead, npySidecarRow } from "./npy_sidecar.ts";
import { decodeNpyFloat32Header, npyHeader } from "./npy.ts";
import { readLines } from "./line_reader.ts";

const enc = new TextEncoder();

function names(out: string) {
  return {
    main: `${out}.partial`,
    paths: `${out}.paths.txt.partial`,
    json: `${out}.json.partial`,
  };
}

class NpyWriter implements FormatWriter {
  #setup: FormatSetup;
  #main: OutputFile;
  #paths: OutputFile;
  #json: OutputFile;
  #rows: number;

  constructor(setup: FormatSetup, files: OutputFile[], rows: number) {
    this.#setup = setup;
    [this.#main, this.#paths, this.#json] = files;
    this.#rows = rows;
  }

  async append(rows: readonly EmbeddingRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#main.append(embeddingBytes(rows, this.#setup.info.embeddingSize));
    await this.#paths.append(enc.encode(rows.map((r) => r.path + "\n").join("")));
    const lines = rows.map((r, i) => npySidecarRow(r, this.#rows + i));
    await this.#json.append(enc.encode(lines.join("")));
    this.#rows += rows.length;
  }

  async sync(): Promise<FormatState> {
    await this.#main.sync();
    await this.#paths.sync();
    await this.#json.sync();
    return { rows: this.#rows, main: this.#main.length, paths: this.#paths.length, json: this.#json.length };
  }

  async committed(): Promise<void> {
    // Readers of the partial file see the committed rows (a later crash rewrites this from the state).
    await this.#main.writeAt(0, npyHeader(this.#rows, this.#setup.info.embeddingSize));
  }

  async finish(): Promise<[string, string][]> {
    await this.#main.writeAt(0, npyHeader(this.#rows, this.#setup.info.embeddingSize));
    await this.#json.append(enc.encode(NPY_SIDECAR_END));
    await this.sync();
    const n = names(this.#setup.out);
    const out = this.#setup.out;
    return [[n.paths, `${out}.paths.txt`], [n.json, `${out}.json`], [n.main, out]];
  }

  close(): void {
    for (const f of [this.#main, this.#paths, this.#json]) f.close();
  }
}

/** The `.npy` format. */
export const npyDriver: FormatDriver = {
  async create(setup) {
    const n = names(setup.out);
    const files = [
      await setup.fs.create(n.main),
      await setup.fs.create(n.paths),
      await setup.fs.create(n.json),
    ];
    await files[0].append(npyHeader(0, setup.info.embeddingSize));
    await files[2].append(enc.encode(npySidecarHead(setup.info, setup.metadataKeys)));
    return new NpyWriter(setup, files, 0);
  },

  async resume(setup, state) {
    const n = names(setup.out);
    const files = [await setup.fs.open(n.main), await setup.fs.open(n.paths), await setup.fs.open(n.json)];
    const lengths = [state.main, state.paths, state.json];
    for (const [i, f] of files.entries()) if (f.length !== lengths[i]) await f.truncate(lengths[i]);
    await files[0].writeAt(0, npyHeader(state.rows, setup.info.embeddingSize));
    return new NpyWriter(setup, files, state.rows);
  },

  stagingFiles(out) {
    return Object.values(names(out));
  },

  async read(path) {
    const file = await Deno.open(path, { read: true });
    let shape: [number, number];
    let dataOffset: number;
    try {
      const { size } = await file.stat();
      ({ shape, offset: dataOffset } = decodeNpyFloat32Header(await readAt(file, 0, Math.min(size, 4096))));
      if (size < dataOffset + 4 * shape[0] * shape[1]) throw new SyntaxError("data shorter than its shape");
    } catch (e) {
      throw new SyntaxError(`Cannot read "${path}": ${(e as Error).message}`, { cause: e });
    } finally {
      file.close();
    }
    const side = `${path}.json`;
    let head: Record<string, unknown> | undefined;
    for await (const { text } of readLines(side)) {
      head = JSON.parse(text + "]}");
      break;
    }
    if (!head) throw new SyntaxError(`Cannot read "${side}": it is empty`);
    const [count, d] = shape;
    const reader: OutputReader = {
      info: infoFromFacts(head, side),
      metadataKeys: head.metadata_keys as string[] | undefined,
      rows: count,
      async *read() {
        const file = await Deno.open(path, { read: true });
        const lines = readLines(side);
        try {
          await lines.next(); // the facts
          const embeddings = readRecords(file, dataOffset, 4 * d, count);
          for (let i = 0; i < count; i++) {
            const line = await lines.next();
            const e = await embeddings.next();
            if (line.done || e.done || line.value.text === "]}") {
              throw new SyntaxError(`Cannot read "${path}": ${count} rows but fewer in "${side}"`);
            }
            const text = line.value.text.endsWith(",") ? line.value.text.slice(0, -1) : line.value.text;
            const r = JSON.parse(text);
            yield {
              path: r.path,
              hash: r.hash,
              position: r.position,
              metadata: r.metadata ?? {},
              embedding: new Float32Array(e.value.slice().buffer),
            };
          }
        } finally {
          file.close();
          await lines.return(undefined);
        }
      },
    };
    return reader;
  },
};
