/**
 * Progress of `deno task embed` on stderr: a bar redrawn in place on a terminal (count, images/s, ETA), a
 * plain line every few seconds otherwise (logs, pipes), nothing when quiet.
 * @module
 */

/** Options of {@linkcode ProgressBar}. */
export interface ProgressBarOptions {
  /** `bar` on a terminal, `lines` otherwise, `none` for `--quiet`. */
  mode: "bar" | "lines" | "none";
  /** Seconds between plain lines (default 5). */
  lineSeconds?: number;
  /** Where to write (default stderr). */
  write?: (text: string) => void;
}

/** Formats seconds as `1h02m`, `3m05s` or `12s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** Tracks images done out of a total and draws the progress. */
export class ProgressBar {
  #total: number;
  #mode: ProgressBarOptions["mode"];
  #lineMs: number;
  #write: (text: string) => void;
  #start = performance.now();
  #lastDraw = 0;
  #done = 0;
  #failed = 0;
  #base = 0;
  #drawnAt = -1;

  /** A progress display for `total` images. */
  constructor(total: number, options: ProgressBarOptions) {
    this.#total = total;
    this.#mode = options.mode;
    this.#lineMs = (options.lineSeconds ?? 5) * 1000;
    const encoder = new TextEncoder();
    this.#write = options.write ?? ((t) => Deno.stderr.writeSync(encoder.encode(t)));
  }

  /** Counts `n` images already done before this run (resumed): they do not enter the rate. */
  skip(n: number): void {
    this.#done += n;
    this.#base += n;
  }

  /** Records `done` more images (of which `failed` failed) and redraws when due. */
  update(done: number, failed = 0): void {
    this.#done += done;
    this.#failed += failed;
    const now = performance.now();
    const due = this.#mode === "bar" ? now - this.#lastDraw > 100 : now - this.#lastDraw > this.#lineMs;
    if (due) this.#draw(now, false);
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    // A plain line for this very state may have just been printed.
    if (this.#mode === "lines" && this.#drawnAt === this.#done + this.#failed) return;
    this.#draw(performance.now(), true);
  }

  /** One line: counts, rate and ETA. */
  status(now = performance.now()): string {
    const seconds = (now - this.#start) / 1000;
    const rate = (this.#done - this.#base) / Math.max(seconds, 1e-9);
    const eta = (this.#total - this.#done) / rate;
    const failed = this.#failed > 0 ? `, ${this.#failed} failed` : "";
    // Slow adapters do well under one image a second: keep two significant digits there.
    const shown = rate >= 10 ? rate.toFixed(1) : rate.toPrecision(2);
    return `${this.#done}/${this.#total} images${failed}, ${shown} images/s, ` +
      `elapsed ${formatDuration(seconds)}, ETA ${this.#done >= this.#total ? "0s" : formatDuration(eta)}`;
  }

  #draw(now: number, final: boolean): void {
    if (this.#mode === "none") return;
    this.#lastDraw = now;
    this.#drawnAt = this.#done + this.#failed;
    if (this.#mode === "lines") {
      this.#write(`embed: ${this.status(now)}\n`);
      return;
    }
    const width = 30;
    const filled = Math.round((width * this.#done) / Math.max(this.#total, 1));
    const bar = "#".repeat(filled) + "-".repeat(width - filled);
    this.#write(`\r\x1b[2K[${bar}] ${this.status(now)}${final ? "\n" : ""}`);
  }

  /** Clears the bar's line before other text is printed (terminal mode). */
  clear(): void {
    if (this.#mode === "bar") this.#write("\r\x1b[2K");
  }
}
