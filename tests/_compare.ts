/**
 * Tolerance checks that print what went wrong: max abs and rel error, and the first mismatches with their
 * index, before failing.
 * @module
 */

/** Options of {@linkcode assertClose}. */
export interface CloseOptions {
  /** Absolute tolerance. */
  abs: number;
  /** Relative tolerance, times |want|. */
  rel: number;
  /** Shape of the arrays, outermost first, to print mismatches as multi-indices (e.g. NHWC). */
  shape?: readonly number[];
  /** Label in the failure message. */
  what?: string;
}

function multiIndex(i: number, shape?: readonly number[]): string {
  if (!shape) return `[${i}]`;
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]);
    i = Math.floor(i / shape[d]);
  }
  return `(${idx.join(",")})`;
}

/** Throws unless `|got - want| <= abs + rel * |want|` everywhere (NaN never passes). */
export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  options: CloseOptions,
): void {
  const what = options.what ?? "values";
  if (got.length !== want.length) {
    throw new Error(`${what}: expected ${want.length} values, got ${got.length}`);
  }
  let maxAbs = 0, maxRel = 0, bad = 0;
  const first: string[] = [];
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    const ok = d <= options.abs + options.rel * Math.abs(want[i]);
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? NaN : Math.max(maxAbs, d);
    const r = d / Math.max(Math.abs(want[i]), 1e-30);
    if (r > maxRel) maxRel = r;
    if (!ok) {
      bad++;
      if (first.length < 5) first.push(`${multiIndex(i, options.shape)} got ${got[i]} want ${want[i]}`);
    }
  }
  if (bad > 0) {
    throw new Error(
      `${what}: ${bad} of ${want.length} outside abs ${options.abs} + rel ${options.rel}; ` +
        `max abs err ${maxAbs}, max rel err ${maxRel}; first: ${first.join("; ")}`,
    );
  }
}

/** max |got - want| / max |want|: the fixtures' error measure. */
export function relativeMaxError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(want[i]));
  }
  return num / den;
}
