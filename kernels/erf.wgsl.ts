/**
 * WGSL functions for erf and the exact GELU in float32 (WGSL has no `erf`), included by kernels that need
 * them (`linear`'s GELU epilogue). Not a kernel: a snippet of functions, no bindings.
 *
 * ```
 * erf_f32(z):  |z| < 1:  z + z * R(z^2)                    R: degree 6 (Horner in u = z^2)
 *              |z| >= 1: sign(z) * (1 - erfc_tail(|z|))
 * erfc_tail(a), a >= 0.5: exp(-a^2) * G(s), s = (t - T_MID) / T_HALF, t = 1 / (1 + a/2)
 *                                                          G: degree 10 (Horner in s, |s| <= 1 for a <= 10)
 *   exp(-a^2) by exp_neg_square: a^2 split exactly, Cody-Waite reduction, Taylor degree 7 (about 1 ulp)
 * gelu_erf(x) = x * Phi(x), Phi(x) = 0.5 * erfc(-x / sqrt 2), from whichever piece has no cancellation:
 *   z = x / sqrt 2 <= -0.5: 0.5 erfc(-z) · -0.5 < z < 1: 0.5 + 0.5 erf(z) · z >= 1: 1 - 0.5 erfc(z),
 *   the tails' exp(-x^2/2) taken from x itself; branch-free (every piece, then selects)
 * numerics (kernels/erf_test.ts, 400,001 points on [-10, 10] against kernels/erf_ref.ts, llvmpipe and
 *   lavapipe alike): erf 8.3e-8 relative at worst; erfc_tail 7.4e-7 (G's terms cancel as a grows);
 *   gelu 3.3e-7 for x > -1 and 6.8e-7 below
 * ```
 *
 * The coefficients were fitted by `tests/_fit_erf.ts` (weighted least squares on Chebyshev nodes against
 * the float64 erf); `erf_test.ts` checks they are what that fit gives. They live here as numbers, and the
 * WGSL's Horner chains are generated from them (templating, so that the lists the test compares with the fit are
 * the ones the shader uses).
 *
 * This module is browser compatible.
 * @module
 */

/** Smallest argument of the tail piece (the GELU uses it from z = -0.5 down). */
export const ERF_TAIL_Z_MIN = 0.5;
/** Largest argument the tail was fitted to; beyond it exp(-a^2) is below f32's smallest normal anyway. */
export const ERF_TAIL_Z_MAX = 10;
/** Centre of t = 1/(1 + a/2) over [ERF_TAIL_Z_MIN, ERF_TAIL_Z_MAX], rounded to f32 (the WGSL's constant). */
export const ERF_TAIL_T_MID: number = Math.fround(
  (1 / (1 + ERF_TAIL_Z_MAX / 2) + 1 / (1 + ERF_TAIL_Z_MIN / 2)) / 2,
);
/** Half-width of t's range, rounded to f32; the WGSL multiplies by its f32 reciprocal. */
export const ERF_TAIL_T_HALF: number = Math.fround(
  (1 / (1 + ERF_TAIL_Z_MIN / 2) - 1 / (1 + ERF_TAIL_Z_MAX / 2)) / 2,
);

/** R(u) = erf(sqrt u)/sqrt u - 1 on u in [0, 1], lowest degree first. */
export const ERF_SMALL_COEFFICIENTS: readonly number[] = [
  0.128379166,
  -0.376126289,
  0.112836123,
  -0.0268548094,
  0.00519005349,
  -0.000802435388,
  0.0000789820988,
];

/** G(s) = erfc(a) exp(a^2) for a in [0.5, 10], lowest degree first. */
export const ERF_TAIL_COEFFICIENTS: readonly number[] = [
  0.241421729,
  0.260514021,
  0.0937748700,
  0.0199174359,
  0.000785845623,
  -0.000693248992,
  -0.0000696384886,
  0.0000388979606,
  0.00000292099435,
  -0.00000245665410,
  -6.86468127e-8,
];

/** Largest a for which exp(-a^2) is an f32 normal (2^k with k >= -125): erfc_tail is 0 beyond. */
export const ERF_EXP_A_MAX = 9.25;

/** ln 2 split: LN2_HI has 15 significand bits, so k * LN2_HI is exact for |k| < 2^8. */
const LN2_HI = 0.693145751953125;
const LN2_LO = 1.4286068202862268e-6;

/** 1/j! for j = 0..7: e^r to 6e-9 relative for |r| <= ln2 / 2. */
const EXP_TAYLOR: readonly number[] = [1, 1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040];

/** A WGSL f32 literal that rounds to the same f32 as `v`. */
function literal(v: number): string {
  const s = Math.fround(v).toPrecision(9);
  return s.includes("e") || s.includes(".") ? s : `${s}.0`;
}

/** Horner's rule over `coefficients` (lowest first) in the variable `x`, as one WGSL expression. */
function horner(coefficients: readonly number[], x: string): string {
  let e = literal(coefficients[coefficients.length - 1]);
  for (let i = coefficients.length - 2; i >= 0; i--) e = `fma(${e}, ${x}, ${literal(coefficients[i])})`;
  return e;
}

/**
 * The WGSL functions `erf_small`, `exp_neg_square`, `erfc_tail`, `erf_f32` and `gelu_erf` (all f32 -> f32).
 * The exponential is the snippet's own rather than the builtin `exp`, whose error WGSL allows to grow as
 * 3 + 2|x| ulps (llvmpipe: 3e-7 relative at x = -1, 1.5e-6 at x = -9, 64 ulps at x = -87).
 */
export const ERF_WGSL: string = /* wgsl */ `
// erf(z) for |z| < 1: z + z * R(z^2), R fitted for relative error (see erf.wgsl.ts)
fn erf_small(z: f32) -> f32 {
  let u = z * z;
  return fma(z, ${horner(ERF_SMALL_COEFFICIENTS, "u")}, z);
}

// exp(-c a^2) for c = 1 or 0.5 (exact scalings) and 0 <= sqrt(c) a <= ${
  literal(ERF_EXP_A_MAX)
}, to about 1 ulp:
// a^2 = hi + lo with hi = ah^2 exact (ah = a with 12 significand bits), then exp(-c hi - c lo) = 2^k e^r with
// r = -c hi - k ln2 - c lo, |r| <= ln2/2, k ln2 split into a part exact in f32 and a small rest (Cody and
// Waite), e^r by Taylor's degree 7
fn exp_neg_square(a: f32, c: f32) -> f32 {
  let ah = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
  let hi = c * (ah * ah);
  let lo = c * ((a - ah) * (a + ah));
  let k = round(-hi * 1.44269504);
  let r = ((-hi - k * ${literal(LN2_HI)}) - k * ${literal(LN2_LO)}) - lo;
  let p = ${horner(EXP_TAYLOR, "r")};
  return ldexp(p, i32(k));
}

// G(a) = erfc(a) exp(a^2) for a in [${literal(ERF_TAIL_Z_MIN)}, ${
  literal(ERF_TAIL_Z_MAX)
}], fitted for relative error in s = (t - T_MID) / T_HALF, t = 1 / (1 + a/2)
fn erfc_ratio(a: f32) -> f32 {
  let t = 1.0 / fma(0.5, a, 1.0);
  let s = (t - ${literal(ERF_TAIL_T_MID)}) * ${literal(1 / ERF_TAIL_T_HALF)};
  return ${horner(ERF_TAIL_COEFFICIENTS, "s")};
}

// erfc(a) for a >= ${literal(ERF_TAIL_Z_MIN)}: exp(-a^2) G(a); 0 past ${
  literal(ERF_EXP_A_MAX)
}, where erfc < 2e-38
fn erfc_tail(a: f32) -> f32 {
  let e = exp_neg_square(min(a, ${literal(ERF_EXP_A_MAX)}), 1.0);
  return select(e * erfc_ratio(a), 0.0, a > ${literal(ERF_EXP_A_MAX)});
}

// erf(z) in f32, about 1e-7 relative; branch-free (both pieces, then a select), which costs nothing extra
// where lanes run in lockstep and keeps unrolled callers quick to compile
fn erf_f32(z: f32) -> f32 {
  let a = abs(z);
  let tail = select(1.0, -1.0, z < 0.0) * (1.0 - erfc_tail(max(a, 1.0)));
  return select(tail, erf_small(z), a < 1.0);
}

// exact GELU: x * Phi(x), Phi(x) = 0.5 * erfc(-x / sqrt(2)), each range from its cancellation-free piece:
// z = x / sqrt 2 <= -0.5: 0.5 erfc(-z) · -0.5 < z < 1: 0.5 + 0.5 erf(z) · z >= 1: 1 - 0.5 erfc(z); the
// tails take exp(-x^2 / 2) from x itself, since the rounding of x / sqrt 2 would cost 2 z^2 * 6e-8
// relative there. Branch-free like erf_f32: the GELU epilogue of linear is unrolled per accumulator.
fn gelu_erf(x: f32) -> f32 {
  let z = x * 0.707106781;
  let a = abs(z);
  let e = exp_neg_square(min(abs(x), ${literal(ERF_EXP_A_MAX * Math.SQRT2)}), 0.5);
  let half_erfc = select(0.5 * e * erfc_ratio(max(a, ${literal(ERF_TAIL_Z_MIN)})), 0.0, a > ${
  literal(ERF_EXP_A_MAX)
});
  let middle = fma(0.5, erf_small(z), 0.5);
  let phi = select(select(middle, 1.0 - half_erfc, z >= 1.0), half_erfc, z <= -${literal(ERF_TAIL_Z_MIN)});
  return x * phi;
}
`;
