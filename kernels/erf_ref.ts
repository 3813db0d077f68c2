/**
 * Float64 references of erf, erfc and the exact GELU, for the WGSL approximations of `erf.wgsl.ts` and the
 * GELU epilogue of `linear`. JavaScript has no `Math.erf`, so both are computed here from series that keep
 * float64's accuracy (about 1e-15 relative):
 *
 * - |z| < 2.5: erf(z) = 2/sqrt(pi) · exp(-z^2) · sum_{n>=0} 2^n z^(2n+1) / (1·3·…·(2n+1)), a series of
 *   positive terms (no cancellation), summed until a term stops changing the sum.
 * - z >= 2.5: erfc(z) = exp(-z^2)/sqrt(pi) · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + 2/(z + …))))), Laplace's
 *   continued fraction, evaluated bottom-up from 120 levels (converged to float64 beyond z = 2).
 *
 * This module is browser compatible.
 * @module
 */

/** Where the references switch from the series to the continued fraction. */
const SWITCH = 2.5;

/** Levels of the continued fraction: at z = 2.5 the last 40 change nothing in float64. */
const LEVELS = 120;

function erfSeries(z: number): number {
  const z2 = z * z;
  let term = z;
  let sum = z;
  for (let n = 1; n < 200; n++) {
    term *= (2 * z2) / (2 * n + 1);
    const next = sum + term;
    if (next === sum) break;
    sum = next;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-z2) * sum;
}

function erfcFraction(z: number): number {
  let f = z;
  for (let k = LEVELS; k >= 1; k--) f = z + k / 2 / f;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * f);
}

/**
 * The error function in float64.
 *
 * @param z Any number.
 * @returns erf(z), odd, in [-1, 1].
 * @example
 * ```ts
 * erfRef(1); // 0.8427007929497149
 * ```
 */
export function erfRef(z: number): number {
  const a = Math.abs(z);
  if (Number.isNaN(z)) return NaN;
  const v = a < SWITCH ? erfSeries(a) : 1 - erfcFraction(a);
  return z < 0 ? -v : v;
}

/**
 * The complementary error function 1 - erf(z) in float64, accurate in relative terms far into the tail.
 *
 * @param z Any number.
 * @returns erfc(z), in [0, 2].
 * @example
 * ```ts
 * erfcRef(3); // 2.209049699858544e-5
 * ```
 */
export function erfcRef(z: number): number {
  if (Number.isNaN(z)) return NaN;
  if (z >= SWITCH) return erfcFraction(z);
  if (z <= -SWITCH) return 2 - erfcFraction(-z);
  return 1 - (z < 0 ? -erfSeries(-z) : erfSeries(z));
}

/**
 * The exact GELU, x · Φ(x) = 0.5 · x · erfc(-x / sqrt(2)) (PyTorch's `gelu` with approximate "none").
 *
 * @param x Any number.
 * @returns gelu(x).
 * @example
 * ```ts
 * geluRef(1); // 0.8413447460685429
 * ```
 */
export function geluRef(x: number): number {
  return 0.5 * x * erfcRef(-x / Math.SQRT2);
}
