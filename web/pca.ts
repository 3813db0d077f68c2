/**
 * The page's 2-D map of the embeddings: the first two principal components.
 *
 * Rows X [N, D] are centred (Xc = X - mean). The top two eigenpairs come from the smaller of the two Gram
 * matrices, M = Xc Xc^T [N, N] when N <= D (a few hundred photos of 6144 floats), else Xc^T Xc [D, D], by
 * subspace iteration with a Rayleigh-Ritz step on a block of up to 6 vectors (cyclic Jacobi on the small
 * projected matrix). Scores are u_k sqrt(lambda_k) in the first case (u_k the eigenvector of Xc Xc^T) and
 * Xc v_k in the second: the same numbers, as Xc v_k = u_k sqrt(lambda_k). Each component's sign is fixed so
 * that its largest-magnitude score is positive, so the picture does not flip between runs. Float64 throughout;
 * deterministic (the start block comes from a fixed-seed generator).
 *
 * This module is browser compatible.
 * @module
 */

/** The projection of N rows onto the first two principal components. */
export interface Projection {
  /** Scores on the first component, [N]. */
  readonly x: Float64Array;
  /** Scores on the second component, [N]. */
  readonly y: Float64Array;
  /** Share of the total variance each component explains. */
  readonly explained: readonly [number, number];
}

/** Most vectors iterated together; more than 2 makes the top two converge faster. */
const BLOCK = 6;
/** Iterations at most; the residual test stops far earlier on real data. */
const MAX_ITERATIONS = 1000;
/** Converged when ||M q_k - lambda_k q_k|| <= TOLERANCE * lambda_0 for the first two. */
const TOLERANCE = 1e-10;

/** Symmetric eigen-decomposition of a small [b, b] matrix (cyclic Jacobi): values descending, vectors as columns. */
export function jacobiEigen(a: Float64Array, b: number): { values: Float64Array; vectors: Float64Array } {
  const m = a.slice();
  const v = new Float64Array(b * b);
  for (let i = 0; i < b; i++) v[i * b + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < b; p++) for (let q = p + 1; q < b; q++) off += m[p * b + q] ** 2;
    if (off < 1e-300) break;
    for (let p = 0; p < b; p++) {
      for (let q = p + 1; q < b; q++) {
        const apq = m[p * b + q];
        if (apq === 0) continue;
        const theta = (m[q * b + q] - m[p * b + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < b; k++) {
          const mkp = m[k * b + p];
          const mkq = m[k * b + q];
          m[k * b + p] = c * mkp - s * mkq;
          m[k * b + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < b; k++) {
          const mpk = m[p * b + k];
          const mqk = m[q * b + k];
          m[p * b + k] = c * mpk - s * mqk;
          m[q * b + k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < b; k++) {
          const vkp = v[k * b + p];
          const vkq = v[k * b + q];
          v[k * b + p] = c * vkp - s * vkq;
          v[k * b + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = [...Array(b).keys()].sort((i, j) => m[j * b + j] - m[i * b + i]);
  const values = Float64Array.from(order, (i) => m[i * b + i]);
  const vectors = new Float64Array(b * b);
  order.forEach((src, dst) => {
    for (let k = 0; k < b; k++) vectors[k * b + dst] = v[k * b + src];
  });
  return { values, vectors };
}

/** A deterministic generator of floats in [-1, 1) (xorshift32), for the start block. */
function generator(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 31 - 1;
  };
}

/**
 * Orthonormalises the b columns of q [m, b] in place (modified Gram-Schmidt twice); a column that vanishes
 * (rank below b) is replaced by a fresh random one.
 */
function orthonormalize(q: Float64Array, m: number, b: number, random: () => number): void {
  for (let j = 0; j < b; j++) {
    for (let attempt = 0; attempt < 5; attempt++) {
      let before = 0;
      for (let i = 0; i < m; i++) before += q[i * b + j] ** 2;
      for (let pass = 0; pass < 2; pass++) {
        for (let k = 0; k < j; k++) {
          let dot = 0;
          for (let i = 0; i < m; i++) dot += q[i * b + k] * q[i * b + j];
          for (let i = 0; i < m; i++) q[i * b + j] -= dot * q[i * b + k];
        }
      }
      let norm = 0;
      for (let i = 0; i < m; i++) norm += q[i * b + j] ** 2;
      if (norm > 1e-24 * Math.max(before, 1e-300) && norm > 0) {
        const r = 1 / Math.sqrt(norm);
        for (let i = 0; i < m; i++) q[i * b + j] *= r;
        break;
      }
      for (let i = 0; i < m; i++) q[i * b + j] = random();
    }
  }
}

/**
 * The first two principal components of `rows`.
 *
 * @param rows N >= 2 rows of D numbers each.
 * @returns Scores on the two components and the share of variance each explains.
 * @throws {RangeError} With fewer than 2 rows, or rows of different lengths.
 * @example
 * ```ts
 * const { x, y, explained } = pca2([[0, 0], [1, 1], [2, 2.1]]);
 * ```
 */
export function pca2(rows: readonly ArrayLike<number>[]): Projection {
  const n = rows.length;
  if (n < 2) throw new RangeError(`Cannot project ${n} embeddings: expected at least 2`);
  const d = rows[0].length;
  const bad = rows.findIndex((r) => r.length !== d);
  if (bad >= 0) {
    throw new RangeError(`Cannot project row ${bad}: expected ${d} numbers, got ${rows[bad].length}`);
  }
  const mean = new Float64Array(d);
  for (const r of rows) for (let j = 0; j < d; j++) mean[j] += r[j] / n;
  const xc = new Float64Array(n * d); // [N, D]
  let total = 0;
  rows.forEach((r, i) => {
    for (let j = 0; j < d; j++) {
      const v = r[j] - mean[j];
      xc[i * d + j] = v;
      total += v * v;
    }
  });
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  if (!(total > 0)) return { x, y, explained: [0, 0] };

  // M [m, m]: the smaller Gram matrix.
  const small = n <= d;
  const m = small ? n : d;
  const mat = new Float64Array(m * m);
  if (small) {
    for (let i = 0; i < n; i++) {
      for (let k = i; k < n; k++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += xc[i * d + j] * xc[k * d + j];
        mat[i * m + k] = s;
        mat[k * m + i] = s;
      }
    }
  } else {
    for (let i = 0; i < n; i++) {
      for (let a = 0; a < d; a++) {
        const va = xc[i * d + a];
        if (va === 0) continue;
        for (let c = a; c < d; c++) mat[a * m + c] += va * xc[i * d + c];
      }
    }
    for (let a = 0; a < d; a++) for (let c = 0; c < a; c++) mat[a * m + c] = mat[c * m + a];
  }

  const b = Math.min(BLOCK, m);
  const random = generator(0x5eed);
  let q = Float64Array.from({ length: m * b }, random); // [m, b]
  orthonormalize(q, m, b, random);
  let values: Float64Array = new Float64Array(b);
  for (let iteration = 0; iteration < MAX_ITERATIONS; iteration++) {
    const z = new Float64Array(m * b); // M Q
    for (let i = 0; i < m; i++) {
      for (let k = 0; k < m; k++) {
        const a = mat[i * m + k];
        if (a === 0) continue;
        for (let c = 0; c < b; c++) z[i * b + c] += a * q[k * b + c];
      }
    }
    // Rayleigh-Ritz: T = Q^T M Q [b, b], T = V diag V^T; rotate Q and MQ by V.
    const t = new Float64Array(b * b);
    for (let r = 0; r < b; r++) {
      for (let c = 0; c < b; c++) {
        let s = 0;
        for (let i = 0; i < m; i++) s += q[i * b + r] * z[i * b + c];
        t[r * b + c] = s;
      }
    }
    for (let r = 0; r < b; r++) {
      for (let c = r + 1; c < b; c++) t[r * b + c] = t[c * b + r] = (t[r * b + c] + t[c * b + r]) / 2;
    }
    const eig = jacobiEigen(t, b);
    values = eig.values;
    const rq = new Float64Array(m * b);
    const rz = new Float64Array(m * b);
    for (let i = 0; i < m; i++) {
      for (let c = 0; c < b; c++) {
        let sq = 0;
        let sz = 0;
        for (let k = 0; k < b; k++) {
          sq += q[i * b + k] * eig.vectors[k * b + c];
          sz += z[i * b + k] * eig.vectors[k * b + c];
        }
        rq[i * b + c] = sq;
        rz[i * b + c] = sz;
      }
    }
    let residual = 0;
    for (let c = 0; c < Math.min(2, b); c++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += (rz[i * b + c] - values[c] * rq[i * b + c]) ** 2;
      residual = Math.max(residual, Math.sqrt(s));
    }
    q = rq;
    if (residual <= TOLERANCE * Math.max(values[0], 1e-300) || iteration === MAX_ITERATIONS - 1) break;
    q = rz;
    orthonormalize(q, m, b, random);
  }

  const components = [x, y];
  for (let c = 0; c < 2; c++) {
    const out = components[c];
    const lambda = c < b ? Math.max(values[c], 0) : 0;
    if (c >= b || lambda === 0) continue;
    if (small) {
      const scale = Math.sqrt(lambda);
      for (let i = 0; i < n; i++) out[i] = q[i * b + c] * scale;
    } else {
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += xc[i * d + j] * q[j * b + c];
        out[i] = s;
      }
    }
    let top = 0;
    for (let i = 1; i < n; i++) if (Math.abs(out[i]) > Math.abs(out[top])) top = i;
    if (out[top] < 0) { for (let i = 0; i < n; i++) out[i] = -out[i]; }
  }
  const share = (c: number) => (c < b ? Math.max(values[c], 0) / total : 0);
  return { x, y, explained: [share(0), share(1)] };
}
