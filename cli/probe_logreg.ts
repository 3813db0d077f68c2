/**
 * L2-regularised logistic regression with scikit-learn's objective for `LogisticRegression(C)`:
 *
 *   minimise over W, b:  C * sum_i logloss(x_i, y_i; W, b) + 1/2 ||W||^2   (b not penalised)
 *
 * binary (two classes: one weight row, p = sigmoid(w.x + b) for the second class) or multinomial (K > 2:
 * one row per class, softmax). Solved by L-BFGS (`probe_lbfgs.ts`) on the same objective divided by C·n
 * (the minimiser is the same; the gradient is then a mean, so one tolerance suits every n): stop when
 * every gradient component is at most `tol` (default 1e-8). Starts from W = 0, b = 0, as scikit-learn
 * does, so the multinomial intercepts keep summing to 0 (the softmax is unchanged by a common shift of
 * b, which the penalty does not fix).
 *
 * Features: rows of a float32 matrix [N, D] (row-major), picked by index; sums in float64. With
 * `standardize`, each feature is replaced by (x - mean) / scale over the training rows (population
 * standard deviation; 1 where it is constant, as scikit-learn's `StandardScaler`), folded into the
 * products rather than copied.
 *
 * Two reformulations that change the path, not the solution: the features are centred inside the solver
 * (b unpenalised, so w.(x - mean) + b' is the same model), which decouples the intercept from the
 * weights; and L-BFGS starts each iteration from a preconditioner built from a rank-128 Nyström
 * approximation of the features' scatter matrix (`probe_nystrom.ts`), which takes out the few large
 * eigenvalues that correlated embedding features give the Hessian (on a synthetic 10,000 x 6,144 problem,
 * 5 x fewer iterations; skipped on small problems, where building it costs more than it saves).
 * @module
 */
import type { LinearModel } from "../models/classifier.ts";
import { minimizeLbfgs } from "./probe_lbfgs.ts";
import { type LowRankScatter, nystromScatter } from "./probe_nystrom.ts";
import {
  addFromBlock,
  blockWidths,
  type FeatureRows,
  MAX_BLOCK,
  rowAxpy,
  rowDots,
  toBlock,
} from "./probe_rows.ts";

export type { FeatureRows };

/** Options of {@linkcode fitLogisticRegression}. */
export interface LogisticRegressionOptions {
  /** Inverse regularisation strength (default 1). */
  C?: number;
  /** Standardise features over the training rows first (default false). */
  standardize?: boolean;
  /** Gradient tolerance, max |g_i| of the objective / (C·n) (default 1e-8). */
  tol?: number;
  /** L-BFGS iteration limit (default 10,000). */
  maxIterations?: number;
  /** Rank of the preconditioner's scatter approximation (default: {@linkcode PRECONDITION_RANK} where it
   * pays, see `defaultRank`; 0: none). */
  preconditionRank?: number;
}

/** A fitted model and how the solver got there. */
export interface LogisticRegressionFit {
  /** The model (standardisation included). */
  readonly model: LinearModel;
  /** L-BFGS iterations. */
  readonly iterations: number;
  /** Objective and gradient evaluations (each one pass over the rows). */
  readonly evaluations: number;
  /** max |g_i| at the end (objective / (C·n)). */
  readonly gradMax: number;
  /** Whether the tolerance was met. */
  readonly converged: boolean;
}

/** Default gradient tolerance of {@linkcode fitLogisticRegression}. */
export const DEFAULT_TOL = 1e-8;

/** L-BFGS correction pairs: 20 took 10-25 % fewer iterations than 10 on correlated features, at a cost
 * (a few vector operations of R·D per iteration) that a pass over the rows dwarfs. */
const LBFGS_MEMORY = 20;

/**
 * Rank of the Nyström preconditioner. On the synthetic 10,000 x 6,144 binary problem of the README
 * (correlated features), L-BFGS took 1,546 iterations without it, 540 with rank 64, 259 with 128 and 187
 * with 256; 128 was the fastest overall (its sketch, from 2,048 rows, takes a few seconds).
 */
export const PRECONDITION_RANK = 128;
/** Rows the preconditioner's scatter is estimated from, at most (2,048 and 4,096 gave 259 and 249 iterations). */
export const PRECONDITION_SAMPLE = 2048;

/**
 * {@linkcode PRECONDITION_RANK}, or 0 when building the preconditioner would cost more than 200 passes
 * over the rows: it saved 22 evaluations on the fixture (360 x 1,024, where it is skipped), about 300 on a
 * 2,000 x 6,144 problem and 900 to 1,000 on 10,000 x 6,144, the saving growing with the conditioning, so
 * with the rows. Cost model in multiply-adds: the sketch 2 m D r (m sampled rows), the small dense algebra
 * about 6 r^2 D + 30 r^3; a pass 2 n D R.
 */
function defaultRank(n: number, d: number, rows: number): number {
  const r = Math.min(PRECONDITION_RANK, d, n - 1);
  const m = Math.min(n, PRECONDITION_SAMPLE);
  const build = 2 * m * d * r + 6 * r * r * d + 30 * r * r * r;
  return build < 200 * (2 * n * d * rows) ? PRECONDITION_RANK : 0;
}

/** `count` of `rows`, evenly spaced (deterministic; the rows' order is arbitrary). */
function sampleRows(rows: ArrayLike<number>, count: number): number[] {
  return Array.from({ length: count }, (_, i) => rows[Math.floor((i * rows.length) / count)]);
}

/** Per-feature mean over the selected rows. */
export function featureMeans(x: FeatureRows): Float64Array {
  const { data, d, rows } = x;
  const mean = new Float64Array(d);
  for (let i = 0; i < rows.length; i++) {
    const off = rows[i] * d;
    for (let j = 0; j < d; j++) mean[j] += data[off + j];
  }
  for (let j = 0; j < d; j++) mean[j] /= rows.length;
  return mean;
}

/**
 * Per-feature mean and population standard deviation over the selected rows (a zero deviation
 * becomes 1), as scikit-learn's `StandardScaler`.
 */
export function standardization(x: FeatureRows): { mean: Float64Array; scale: Float64Array } {
  const { data, d, rows } = x;
  const n = rows.length;
  const mean = featureMeans(x);
  const scale = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const off = rows[i] * d;
    for (let j = 0; j < d; j++) {
      const t = data[off + j] - mean[j];
      scale[j] += t * t;
    }
  }
  const eps = Number.EPSILON;
  for (let j = 0; j < d; j++) {
    const variance = scale[j] / n;
    // A variance within the rounding error of its computation is a constant feature: scale 1 (the bound
    // StandardScaler uses, n eps var + (n mean eps)^2).
    const bound = n * eps * variance + (n * mean[j] * eps) ** 2;
    scale[j] = variance <= bound ? 1 : Math.sqrt(variance);
  }
  return { mean, scale };
}

/**
 * Fits the model.
 *
 * @param x The training rows.
 * @param y Class index of each selected row (0 to classes.length - 1).
 * @param classes Class names, sorted; two or more.
 * @param options C, standardisation, tolerance.
 * @returns The model and the solver's figures.
 * @throws {TypeError} When y and the rows differ in length, a class index is out of range, or there are
 * fewer than two classes.
 * @throws {RangeError} When C is not positive.
 */
export function fitLogisticRegression(
  x: FeatureRows,
  y: ArrayLike<number>,
  classes: readonly string[],
  options: LogisticRegressionOptions = {},
): LogisticRegressionFit {
  const C = options.C ?? 1;
  if (!(C > 0) || !Number.isFinite(C)) throw new RangeError(`Cannot fit: expected C > 0, got ${C}`);
  const K = classes.length;
  if (K < 2) throw new TypeError(`Cannot fit: expected two or more classes, got ${K}`);
  const n = x.rows.length;
  if (n === 0) throw new TypeError("Cannot fit: expected training rows, got none");
  if (y.length !== n) throw new TypeError(`Cannot fit: expected ${n} labels, got ${y.length}`);
  for (let i = 0; i < n; i++) {
    if (!Number.isInteger(y[i]) || y[i] < 0 || y[i] >= K) {
      throw new TypeError(`Cannot fit: expected class indices 0 to ${K - 1}, got ${y[i]}`);
    }
  }
  const { data, d, rows } = x;
  const R = K === 2 ? 1 : K; // weight rows
  const std = options.standardize ? standardization(x) : undefined;
  const invScale = std ? std.scale.map((s) => 1 / s) : undefined;
  // The features are centred inside the solver even without standardisation: with b unpenalised,
  // w.(x - mean) + b' is the same model (b = b' - w.mean) and the same objective, but the intercept no
  // longer couples with every weight, which makes the problem far better conditioned.
  const mean = std?.mean ?? featureMeans(x);
  const lambda = 1 / C; // penalty weight relative to the summed loss
  const norm = 1 / n; // objective / (C n) = (sum loss + ||W||^2 / (2C)) / n

  // Scratch, reused by every evaluation. The weight rows go in blocks of up to 4 (probe_rows.ts).
  const widths = blockWidths(R);
  const starts = widths.map((_, b) => b * MAX_BLOCK);
  const v = new Float64Array(R * d); // W / scale: the weights applied to raw features, [R, D]
  const vBlocks = widths.map((w) => new Float64Array(w * d));
  const gBlocks = widths.map((w) => new Float64Array(w * d)); // sum_i r_ik x_ij, per block
  const gRaw = new Float64Array(R * d);
  const c = new Float64Array(R); // b - v . mean
  const rSum = new Float64Array(R);
  const z = new Float64Array(R);

  const fg = (theta: Float64Array, g: Float64Array): number => {
    // theta = [W (R x D) row-major, b (R)].
    for (let k = 0; k < R; k++) {
      let ck = theta[R * d + k];
      for (let j = 0; j < d; j++) {
        const vj = invScale ? theta[k * d + j] * invScale[j] : theta[k * d + j];
        v[k * d + j] = vj;
        ck -= vj * mean[j];
      }
      c[k] = ck;
    }
    widths.forEach((w, b) => {
      toBlock(v, d, starts[b], w, vBlocks[b]);
      gBlocks[b].fill(0);
    });
    rSum.fill(0);
    let loss = 0;
    for (let i = 0; i < n; i++) {
      const off = rows[i] * d;
      for (let b = 0; b < widths.length; b++) rowDots(data, off, d, vBlocks[b], widths[b], z, starts[b]);
      for (let k = 0; k < R; k++) z[k] += c[k];
      const yi = y[i];
      if (R === 1) {
        // logloss = softplus(z) - y z; d/dz = sigmoid(z) - y
        const zi = z[0];
        loss += (zi > 0 ? zi + Math.log1p(Math.exp(-zi)) : Math.log1p(Math.exp(zi))) - (yi === 1 ? zi : 0);
        const p = zi >= 0 ? 1 / (1 + Math.exp(-zi)) : Math.exp(zi) / (1 + Math.exp(zi));
        z[0] = p - yi;
      } else {
        // logloss = logsumexp(z) - z_y; d/dz_k = softmax_k - [k = y]
        let max = -Infinity;
        for (let k = 0; k < R; k++) max = Math.max(max, z[k]);
        let sum = 0;
        for (let k = 0; k < R; k++) sum += Math.exp(z[k] - max);
        loss += max + Math.log(sum) - z[yi];
        for (let k = 0; k < R; k++) z[k] = Math.exp(z[k] - max) / sum - (k === yi ? 1 : 0);
      }
      for (let k = 0; k < R; k++) rSum[k] += z[k];
      for (let b = 0; b < widths.length; b++) rowAxpy(data, off, d, z, starts[b], gBlocks[b], widths[b]);
    }
    gRaw.fill(0);
    widths.forEach((w, b) => addFromBlock(gBlocks[b], d, starts[b], w, gRaw));
    let penalty = 0;
    for (let k = 0; k < R; k++) {
      for (let j = 0; j < d; j++) {
        const w = theta[k * d + j];
        penalty += w * w;
        let gj = gRaw[k * d + j] - mean[j] * rSum[k];
        if (invScale) gj *= invScale[j];
        g[k * d + j] = norm * (gj + lambda * w);
      }
      g[R * d + k] = norm * rSum[k];
    }
    return norm * (loss + 0.5 * lambda * penalty);
  };

  const rank = Math.min(options.preconditionRank ?? defaultRank(n, d, R), d, n - 1);
  let precondition;
  if (rank > 0) {
    // The scatter of a sample of the rows, scaled up, is enough for a preconditioner.
    const sample = n > PRECONDITION_SAMPLE ? sampleRows(rows, PRECONDITION_SAMPLE) : rows;
    const scatter = nystromScatter({ data, d, rows: sample }, mean, invScale, rank, 0, n / sample.length);
    precondition = scatterPreconditioner(scatter, R, d, n, C * (K === 2 ? 0.25 : (1 / K) * (1 - 1 / K)));
  }
  const result = minimizeLbfgs(fg, new Float64Array(R * d + R), {
    precondition,
    gtol: options.tol ?? DEFAULT_TOL,
    memory: LBFGS_MEMORY,
    maxIterations: options.maxIterations ?? 10_000,
  });
  const weights = result.x.slice(0, R * d);
  const intercepts = result.x.slice(R * d);
  if (!std) {
    for (let k = 0; k < R; k++) {
      let shift = 0;
      for (let j = 0; j < d; j++) shift += weights[k * d + j] * mean[j];
      intercepts[k] -= shift;
    }
  }
  return {
    model: { classes: [...classes], weights, intercepts, mean: std?.mean, scale: std?.scale },
    iterations: result.iterations,
    evaluations: result.evaluations,
    gradMax: result.gradMax,
    converged: result.converged,
  };
}

/**
 * H0 for L-BFGS from the scatter approximation A ≈ U diag(lambda) U^T: each weight row's Hessian block
 * is about c A + I (c = C times the logistic curvature at the start, 1/4 for two classes), so H0 =
 * U diag(1 / (c lambda_i + 1)) U^T + (I - U U^T) / (c lambda_r + 1), taking the smallest computed
 * eigenvalue for the directions outside U; an intercept's Hessian is about c n.
 */
function scatterPreconditioner(
  a: LowRankScatter,
  rows: number,
  d: number,
  n: number,
  c: number,
): (v: Float64Array) => void {
  const r = a.rank;
  const tail = 1 / (c * a.values[r - 1] + 1);
  const factors = Float64Array.from(a.values, (l) => 1 / (c * l + 1) - tail);
  const proj = new Float64Array(r);
  const u = a.vectors;
  return (v) => {
    for (let k = 0; k < rows; k++) {
      const o = k * d;
      for (let e = 0; e < r; e++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += u[e * d + j] * v[o + j];
        proj[e] = s * factors[e];
      }
      for (let j = 0; j < d; j++) v[o + j] *= tail;
      for (let e = 0; e < r; e++) {
        const pe = proj[e];
        for (let j = 0; j < d; j++) v[o + j] += pe * u[e * d + j];
      }
    }
    for (let k = 0; k < rows; k++) v[rows * d + k] *= 1 / (c * n);
  };
}
