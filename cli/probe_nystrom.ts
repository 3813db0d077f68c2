/**
 * A randomised Nyström approximation of the scatter matrix A = X~^T X~ of the training rows (X~: the
 * rows centred, and divided by the scales when standardising): A ≈ U diag(lambda) U^T with r orthonormal
 * columns U, from one pass over the rows (Tropp, Yurtsever, Udell & Cevher, "Fixed-rank approximation of
 * a positive-semidefinite matrix from streaming data", NeurIPS 2017, Algorithm 3, with its small shift
 * nu for stability). `probe_logreg.ts` builds its L-BFGS preconditioner from it: the Hessian of the
 * logistic loss is C X~^T D X~ + I with D <= 1/4, so A's few large eigenvalues are what makes the
 * problem ill-conditioned, and they are what a rank-r approximation captures.
 *
 * Layouts: an [r, D] matrix holds r vectors of length D, one per row (the columns of U, of the test
 * matrix Q, of the sketch Y).
 * @module
 */
import type { FeatureRows } from "./probe_rows.ts";
import { addFromBlock, blockWidths, MAX_BLOCK, rowAxpy, rowDots, toBlock } from "./probe_rows.ts";
import { type Rng, seededRng } from "./probe_split.ts";

/** A ≈ U diag(lambda) U^T. */
export interface LowRankScatter {
  /** r. */
  readonly rank: number;
  /** [r, D]: the orthonormal eigenvectors, one per row. */
  readonly vectors: Float64Array;
  /** r eigenvalues, descending, >= 0. */
  readonly values: Float64Array;
}

function gaussian(rng: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

/**
 * Orthonormalises the r rows of the [r, D] matrix m in place (modified Gram-Schmidt, twice, which
 * keeps them orthogonal to rounding); a row that vanishes becomes 0.
 */
export function orthonormalizeRows(m: Float64Array, r: number, d: number): void {
  for (let pass = 0; pass < 2; pass++) {
    for (let k = 0; k < r; k++) {
      const a = m.subarray(k * d, (k + 1) * d);
      for (let q = 0; q < k; q++) {
        const b = m.subarray(q * d, (q + 1) * d);
        let s = 0;
        for (let j = 0; j < d; j++) s += a[j] * b[j];
        for (let j = 0; j < d; j++) a[j] -= s * b[j];
      }
      let norm = 0;
      for (let j = 0; j < d; j++) norm += a[j] * a[j];
      norm = Math.sqrt(norm);
      const inv = norm > 1e-300 ? 1 / norm : 0;
      for (let j = 0; j < d; j++) a[j] *= inv;
    }
  }
}

/**
 * Eigen-decomposition of a symmetric r x r matrix (cyclic Jacobi rotations).
 *
 * @param a Row-major [r, r], symmetric (destroyed).
 * @param r Its size.
 * @returns Eigenvalues (descending) and eigenvectors as the rows of an [r, r] matrix, in that order.
 */
export function symmetricEigen(a: Float64Array, r: number): { values: Float64Array; vectors: Float64Array } {
  const v = new Float64Array(r * r);
  for (let i = 0; i < r; i++) v[i * r + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let total = 0;
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < r; j++) {
        total += a[i * r + j] ** 2;
        if (i !== j) off += a[i * r + j] ** 2;
      }
    }
    if (off <= 1e-30 * total) break;
    for (let p = 0; p < r - 1; p++) {
      for (let q = p + 1; q < r; q++) {
        const apq = a[p * r + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * r + q] - a[p * r + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < r; k++) {
          // columns p, q of a
          const akp = a[k * r + p], akq = a[k * r + q];
          a[k * r + p] = c * akp - s * akq;
          a[k * r + q] = s * akp + c * akq;
        }
        for (let k = 0; k < r; k++) {
          // rows p, q of a
          const apk = a[p * r + k], aqk = a[q * r + k];
          a[p * r + k] = c * apk - s * aqk;
          a[q * r + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < r; k++) {
          // eigenvectors as columns of v
          const vkp = v[k * r + p], vkq = v[k * r + q];
          v[k * r + p] = c * vkp - s * vkq;
          v[k * r + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: r }, (_, i) => i).sort((i, j) => a[j * r + j] - a[i * r + i]);
  const values = Float64Array.from(order, (i) => a[i * r + i]);
  const vectors = new Float64Array(r * r);
  order.forEach((col, row) => {
    for (let k = 0; k < r; k++) vectors[row * r + k] = v[k * r + col];
  });
  return { values, vectors };
}

/**
 * The rank-r Nyström approximation of the centred (and scaled) scatter matrix of the rows.
 *
 * @param x The rows.
 * @param mean D means (the centre).
 * @param invScale D reciprocal scales, or undefined (no scaling).
 * @param rank r (at most D).
 * @param seed Seed of the random test matrix.
 * @param weight Each row's weight (default 1; N / M when the rows are a sample of M of N).
 * @returns U and lambda.
 */
export function nystromScatter(
  x: FeatureRows,
  mean: Float64Array,
  invScale: Float64Array | undefined,
  rank: number,
  seed: number,
  weight = 1,
): LowRankScatter {
  const { data, d, rows } = x;
  const r = Math.min(rank, d);
  const rng = seededRng(seed);
  const q = Float64Array.from({ length: r * d }, () => gaussian(rng));
  orthonormalizeRows(q, r, d);
  // Y = A Q = S (X - 1 mean^T)^T (X - 1 mean^T) S Q, with S = diag(invScale): with t_i = (x_i - mean).(S q),
  // Y = S (sum_i t_i x_i - mean sum_i t_i) (the last sum is 0 when mean is these rows' own mean).
  const sq = new Float64Array(r * d);
  for (let k = 0; k < r; k++) {
    for (let j = 0; j < d; j++) sq[k * d + j] = invScale ? q[k * d + j] * invScale[j] : q[k * d + j];
  }
  const widths = blockWidths(r);
  const shift = new Float64Array(r); // mean . (S q_k)
  for (let k = 0; k < r; k++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += mean[j] * sq[k * d + j];
    shift[k] = s;
  }
  const qBlocks = widths.map((w, b) => {
    const block = new Float64Array(w * d);
    toBlock(sq, d, b * MAX_BLOCK, w, block);
    return block;
  });
  const yBlocks = widths.map((w) => new Float64Array(w * d));
  const t = new Float64Array(r);
  const tSum = new Float64Array(r);
  for (let i = 0; i < rows.length; i++) {
    const off = rows[i] * d;
    for (let b = 0; b < widths.length; b++) rowDots(data, off, d, qBlocks[b], widths[b], t, b * MAX_BLOCK);
    for (let k = 0; k < r; k++) {
      t[k] -= shift[k];
      tSum[k] += t[k];
    }
    for (let b = 0; b < widths.length; b++) rowAxpy(data, off, d, t, b * MAX_BLOCK, yBlocks[b], widths[b]);
  }
  const y = new Float64Array(r * d);
  widths.forEach((w, b) => addFromBlock(yBlocks[b], d, b * MAX_BLOCK, w, y));
  for (let k = 0; k < r; k++) {
    for (let j = 0; j < d; j++) {
      const v = (y[k * d + j] - mean[j] * tSum[k]) * weight;
      y[k * d + j] = invScale ? v * invScale[j] : v;
    }
  }
  // Shift nu = sqrt(D) eps ||Y||_F; Y_nu = Y + nu Q.
  let fro = 0;
  for (let i = 0; i < y.length; i++) fro += y[i] * y[i];
  const nu = Math.sqrt(d) * Number.EPSILON * Math.sqrt(fro);
  for (let i = 0; i < y.length; i++) y[i] += nu * q[i];
  // B = Q^T Y_nu (r x r, symmetrised), B = L L^T.
  const bm = new Float64Array(r * r);
  for (let a = 0; a < r; a++) {
    for (let c = 0; c <= a; c++) {
      let s1 = 0, s2 = 0;
      for (let j = 0; j < d; j++) {
        s1 += q[a * d + j] * y[c * d + j];
        s2 += q[c * d + j] * y[a * d + j];
      }
      bm[a * r + c] = bm[c * r + a] = (s1 + s2) / 2;
    }
  }
  const l = cholesky(bm, r);
  // F = Y_nu L^{-T}: column k of F is (Y_nu[:, k] - sum_{m<k} L[k, m] F[:, m]) / L[k, k].
  const f = y; // in place, column by column
  for (let k = 0; k < r; k++) {
    const fk = f.subarray(k * d, (k + 1) * d);
    for (let m2 = 0; m2 < k; m2++) {
      const lkm = l[k * r + m2];
      if (lkm === 0) continue;
      const fm = f.subarray(m2 * d, (m2 + 1) * d);
      for (let j = 0; j < d; j++) fk[j] -= lkm * fm[j];
    }
    const inv = l[k * r + k] > 0 ? 1 / l[k * r + k] : 0;
    for (let j = 0; j < d; j++) fk[j] *= inv;
  }
  // F = U Sigma V^T from the eigen-decomposition of F^T F = V Sigma^2 V^T; U = F V Sigma^-1.
  const g = new Float64Array(r * r);
  for (let a = 0; a < r; a++) {
    for (let c = 0; c <= a; c++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += f[a * d + j] * f[c * d + j];
      g[a * r + c] = g[c * r + a] = s;
    }
  }
  const eig = symmetricEigen(g, r);
  const vectors = new Float64Array(r * d);
  const values = new Float64Array(r);
  for (let e = 0; e < r; e++) {
    const sigma2 = Math.max(0, eig.values[e]);
    const sigma = Math.sqrt(sigma2);
    values[e] = Math.max(0, sigma2 - nu);
    if (sigma === 0) continue;
    const u = vectors.subarray(e * d, (e + 1) * d);
    for (let k = 0; k < r; k++) {
      const c = eig.vectors[e * r + k] / sigma;
      if (c === 0) continue;
      for (let j = 0; j < d; j++) u[j] += c * f[k * d + j];
    }
  }
  return { rank: r, vectors, values };
}

/** Lower-triangular L with L L^T = a (r x r), pivots that are not positive set to 0 (rank-deficient a). */
function cholesky(a: Float64Array, r: number): Float64Array {
  const l = new Float64Array(r * r);
  const tiny = 1e-14 * Math.max(1e-300, ...Array.from({ length: r }, (_, i) => Math.abs(a[i * r + i])));
  for (let i = 0; i < r; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * r + j];
      for (let k = 0; k < j; k++) s -= l[i * r + k] * l[j * r + k];
      if (i === j) l[i * r + i] = s > tiny ? Math.sqrt(s) : 0;
      else l[i * r + j] = l[j * r + j] > 0 ? s / l[j * r + j] : 0;
    }
  }
  return l;
}
