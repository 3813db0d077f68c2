/**
 * A small progress bar for long transfers and conversions: redrawn in place on a terminal, a few plain lines
 * otherwise (logs and CI stay readable).
 * @module
 */

/** Options of {@linkcode ProgressBar}. */
export interface ProgressOptions {
  /** Total units (bytes); unknown when omitted (no percentage). */
  total?: number;
  /** Redraw one line in place (default: whether stderr is a terminal). */
  interactive?: boolean;
  /** Where text goes (default: stderr). */
  write?: (text: string) => void;
  /** Smallest interval between terminal redraws, in ms (default 100). */
  intervalMs?: number;
}

const encoder = new TextEncoder();

function writeStderr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/**
 * Formats a byte count with a binary unit (`1.5 GiB`).
 *
 * @param bytes The count.
 * @returns Text such as `512 B`, `12.3 MiB`.
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Width of the bar itself, in characters. */
const BAR_WIDTH = 30;
/** Non-interactive output prints a line each time another quarter is done. */
const PLAIN_STEPS = 4;

/**
 * Progress of one task (a file download): `update()` as units arrive, `finish()` at the end.
 *
 * @example
 * ```ts
 * const bar = new ProgressBar("model.safetensors", { total: size });
 * for await (const chunk of body) bar.update(done += chunk.length);
 * bar.finish();
 * ```
 */
export class ProgressBar {
  #label: string;
  #total: number | undefined;
  #interactive: boolean;
  #write: (text: string) => void;
  #intervalMs: number;
  #start = performance.now();
  #lastDraw = -Infinity;
  #lastStep = -1;
  #done = 0;
  #startDone: number | undefined;

  /** Starts a bar for `label`. */
  constructor(label: string, options: ProgressOptions = {}) {
    this.#label = label;
    this.#total = options.total;
    this.#interactive = options.interactive ?? Deno.stderr.isTerminal();
    this.#write = options.write ?? writeStderr;
    this.#intervalMs = options.intervalMs ?? 100;
  }

  /** The current line: label, bar, percentage, bytes and rate. */
  line(): string {
    const elapsed = (performance.now() - this.#start) / 1000;
    const rate = elapsed > 0 ? (this.#done - (this.#startDone ?? 0)) / elapsed : 0;
    const amount = this.#total === undefined
      ? formatBytes(this.#done)
      : `${formatBytes(this.#done)} / ${formatBytes(this.#total)}`;
    const speed = `${formatBytes(Math.round(rate))}/s`;
    if (this.#total === undefined || this.#total === 0) return `${this.#label} ${amount} ${speed}`;
    const fraction = Math.min(1, this.#done / this.#total);
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH - filled);
    return `${this.#label} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% ${amount} ${speed}`;
  }

  /** Sets the units done so far (the first call sets the rate's starting point, e.g. a resumed download). */
  update(done: number): void {
    this.#startDone ??= done;
    this.#done = done;
    const now = performance.now();
    if (this.#interactive) {
      if (now - this.#lastDraw < this.#intervalMs) return;
      this.#lastDraw = now;
      this.#write(`\r${this.line()}\x1b[K`);
      return;
    }
    if (this.#total === undefined || this.#total === 0) return;
    const step = Math.floor((done / this.#total) * PLAIN_STEPS);
    if (step > this.#lastStep && step < PLAIN_STEPS) {
      this.#lastStep = step;
      this.#write(`${this.line()}\n`);
    }
  }

  /** Prints a message on its own line without breaking the bar (the bar is redrawn on the next update). */
  note(message: string): void {
    this.#write(this.#interactive ? `\r\x1b[K${message}\n` : `${message}\n`);
    this.#lastDraw = -Infinity;
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    this.#write(this.#interactive ? `\r${this.line()}\x1b[K\n` : `${this.line()}\n`);
  }
}
