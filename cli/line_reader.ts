/**
 * Reads a text file line by line in bounded memory (1 MiB chunks), with each line's end offset: for
 * JSON-lines files that may be larger than memory, and for cutting a file back to its last whole line.
 * @module
 */

/** One line: its text (without the "\n") and the byte offset just after its "\n". */
export interface Line {
  readonly text: string;
  readonly end: number;
}

const CHUNK = 1 << 20;

/**
 * The lines of `path` that end in "\n", up to `limit` bytes (default: the whole file); a last line without
 * its "\n" (cut short by a crash) is not yielded.
 *
 * @param path The file.
 * @param limit Bytes to read at most.
 */
export async function* readLines(path: string, limit = Infinity): AsyncGenerator<Line> {
  const file = await Deno.open(path, { read: true });
  const decoder = new TextDecoder();
  try {
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let offset = 0;
    const buffer = new Uint8Array(CHUNK);
    while (offset < limit) {
      const n = await file.read(buffer.subarray(0, Math.min(CHUNK, limit - offset)));
      if (n === null || n === 0) break;
      const chunk = buffer.subarray(0, n);
      let start = 0;
      for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
        const piece = chunk.subarray(start, nl);
        let bytes: Uint8Array = piece;
        if (pendingBytes > 0) {
          bytes = new Uint8Array(pendingBytes + piece.length);
          let o = 0;
          for (const p of pending) {
            bytes.set(p, o);
            o += p.length;
          }
          bytes.set(piece, o);
          pending = [];
          pendingBytes = 0;
        }
        yield { text: decoder.decode(bytes), end: offset + nl + 1 };
        start = nl + 1;
      }
      if (start < n) {
        pending.push(chunk.slice(start));
        pendingBytes += n - start;
      }
      offset += n;
    }
  } finally {
    file.close();
  }
}
