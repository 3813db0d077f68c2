/**
 * Fits the polynomial coefficients of the float32 erf in `kernels/erf.wgsl.ts` against the float64 erf of
 * `kernels/erf_ref.ts`, by weighted least squares on Chebyshev nodes (close to minimax at these degrees).
 * `kernels/erf_test.ts` checks that the WGSL's coefficients are what this fit gives; run it to print them:
 * `deno run tests/_fit_erf.ts`.
 *
 * The two pieces (see `kernels/erf.wgsl.ts`):
 * - small: erf(z) = z + z · R(z^2) for |z| < 1, R(u) = erf(sqrt u)/sqrt u - 1 of degree 6 in u, fitted for
 *   relative error of erf (weight z / erf(z));
 * - tail: erfc(z) = exp(-z^2) · G(s) for z in [0.5, 10], G = erfc(z) · exp(z^2) of degree 10 in
 *   s = (t - TAIL_T_MID) / TAIL_T_HALF with t = 1 / (1 + z / 2), fitted for relative error of erfc.
 * @module
 */
import { erfcRef, erfRef } from "../kernels/erf_ref.ts";
import { ERF_TAIL_T_HALF, ERF_TAIL_T_MID, ERF_TAIL_Z_MAX, ERF_TAIL_Z_MIN } from "../kernels/erf.wgsl.ts";

/** Least-squares nodes per fit. */
const NODES = 400;

function chebyshevNodes(a: number, b: number, n: number): number[] {
  return Array.from(
    { length: n },
    (_, k) => (a + b) / 2 + ((b - a) / 2) * Math.cos((Math.PI * (k + 0.5)) / n),
  );
}

/** Solves min ||diag(w) (V c - y)|| for c by Householder QR; V[i][j] = x_i^j. */
function weightedPolyFit(x: number[], y: number[], w: number[], degree: number): number[] {
  const rows = x.length;
  const cols = degree + 1;
  const a = x.map((xi, i) => Array.from({ length: cols }, (_, j) => w[i] * xi ** j));
  const b = y.map((yi, i) => w[i] * yi);
  for (let j = 0; j < cols; j++) {
    let norm = 0;
    for (let i = j; i < rows; i++) norm += a[i][j] ** 2;
    norm = Math.sqrt(norm);
    const alpha = a[j][j] > 0 ? -norm : norm;
    const v = new Float64Array(rows);
    for (let i = j; i < rows; i++) v[i] = a[i][j];
    v[j] -= alpha;
    let vv = 0;
    for (let i = j; i < rows; i++) vv += v[i] ** 2;
    if (vv === 0) continue;
    for (let k = j; k < cols; k++) {
      let d = 0;
      for (let i = j; i < rows; i++) d += v[i] * a[i][k];
      for (let i = j; i < rows; i++) a[i][k] -= (2 * d / vv) * v[i];
    }
    let d = 0;
    for (let i = j; i < rows; i++) d += v[i] * b[i];
    for (let i = j; i < rows; i++) b[i] -= (2 * d / vv) * v[i];
  }
  const c = new Array<number>(cols).fill(0);
  for (let j = cols - 1; j >= 0; j--) {
    let s = b[j];
    for (let k = j + 1; k < cols; k++) s -= a[j][k] * c[k];
    c[j] = s / a[j][j];
  }
  return c;
}

/** Both coefficient lists, lowest degree first, as float64 (the WGSL rounds them to f32). */
export function fitErfCoefficients(): { small: number[]; tail: number[] } {
  const zs = chebyshevNodes(0, 1, NODES);
  const small = weightedPolyFit(
    zs.map((z) => z * z),
    zs.map((z) => erfRef(z) / z - 1),
    zs.map((z) => z / erfRef(z)),
    6,
  );
  const t0 = 1 / (1 + ERF_TAIL_Z_MAX / 2);
  const t1 = 1 / (1 + ERF_TAIL_Z_MIN / 2);
  const ts = chebyshevNodes(t0, t1, NODES);
  const g = ts.map((t) => {
    const z = 2 * (1 / t - 1);
    return erfcRef(z) * Math.exp(z * z);
  });
  const tail = weightedPolyFit(
    ts.map((t) => (t - ERF_TAIL_T_MID) / ERF_TAIL_T_HALF),
    g,
    g.map((v) => 1 / v),
    10,
  );
  return { small, tail };
}

if (import.meta.main) {
  const { small, tail } = fitErfCoefficients();
  const show = (c: number[]) => c.map((v) => Math.fround(v).toPrecision(9)).join(", ");
  console.log(`small: [${show(small)}]`);
  console.log(`tail: [${show(tail)}]`);
}
