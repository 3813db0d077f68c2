/**
 * Cosine k-nearest-neighbour classification, as scikit-learn's
 * `KNeighborsClassifier(k, metric="cosine", algorithm="brute")` with uniform weights: the k training rows
 * of least cosine distance 1 - x.t / (|x| |t|) vote (a zero vector is at distance 1 from everything);
 * the probabilities are the vote shares; a tied vote goes to the class that sorts first. Rows at equal
 * distance are taken in row order.
 *
 * k chosen by inner validation (Gröger et al.'s protocol): the training rows are split into stratified
 * folds (5, or the smallest class's count when smaller), every candidate k (default 1, 5, 10, 20, 30, 50,
 * 100, 200; only those below the inner training size) predicts each held-out row from the other folds,
 * and the k of the highest macro F1 over the pooled held-out predictions wins (ties to the smaller k).
 * With a class of a single row there is nothing to validate on, and k is 1.
 * @module
 */
import { classificationReport } from "./probe_metrics.ts";
import type { FeatureRows } from "./probe_rows.ts";
import { stratifiedFolds } from "./probe_split.ts";

/** Candidate k of the inner validation. */
export const K_CANDIDATES: readonly number[] = [1, 5, 10, 20, 30, 50, 100, 200];

/** Euclidean norm of every row of the matrix (all N rows). */
export function rowNorms(data: Float32Array, d: number): Float64Array {
  const n = data.length / d;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = i * d; j < (i + 1) * d; j++) s += data[j] * data[j];
    out[i] = Math.sqrt(s);
  }
  return out;
}

/**
 * The `kmax` candidates nearest each query by cosine distance, nearest first (ties in candidate order).
 *
 * @param data [N, D] float32, row-major.
 * @param d D.
 * @param norms {@linkcode rowNorms} of data.
 * @param queries Query row indices.
 * @param candidates Candidate row indices.
 * @param kmax How many neighbours (at most the number of candidates).
 * @returns For each query, positions in `candidates`, nearest first.
 */
export function cosineNeighbours(
  data: Float32Array,
  d: number,
  norms: Float64Array,
  queries: ArrayLike<number>,
  candidates: ArrayLike<number>,
  kmax: number,
): Int32Array[] {
  const k = Math.min(kmax, candidates.length);
  const out: Int32Array[] = [];
  const topSim = new Float64Array(k);
  const topPos = new Int32Array(k);
  for (let q = 0; q < queries.length; q++) {
    const qi = queries[q];
    const qo = qi * d;
    const qn = norms[qi];
    let filled = 0;
    for (let c = 0; c < candidates.length; c++) {
      const ci = candidates[c];
      const co = ci * d;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let j = 0;
      for (; j + 4 <= d; j += 4) {
        s0 += data[qo + j] * data[co + j];
        s1 += data[qo + j + 1] * data[co + j + 1];
        s2 += data[qo + j + 2] * data[co + j + 2];
        s3 += data[qo + j + 3] * data[co + j + 3];
      }
      for (; j < d; j++) s0 += data[qo + j] * data[co + j];
      const denom = qn * norms[ci];
      const sim = denom === 0 ? 0 : ((s0 + s1) + (s2 + s3)) / denom;
      // Insert into the sorted top list (most similar first; an equal similarity stays behind).
      if (filled < k) filled++;
      else if (!(sim > topSim[k - 1])) continue;
      let t = filled - 1;
      while (t > 0 && topSim[t - 1] < sim) {
        topSim[t] = topSim[t - 1];
        topPos[t] = topPos[t - 1];
        t--;
      }
      topSim[t] = sim;
      topPos[t] = c;
    }
    out.push(topPos.slice(0, filled));
  }
  return out;
}

/**
 * The vote of the first `k` neighbours.
 *
 * @param neighbourClasses Class index of each neighbour, nearest first.
 * @param k Voters.
 * @param classes K.
 * @returns Vote shares (the probabilities) and the winner (ties: the lowest class index).
 */
export function knnVote(
  neighbourClasses: ArrayLike<number>,
  k: number,
  classes: number,
): { probabilities: Float64Array; predicted: number } {
  const votes = new Float64Array(classes);
  const m = Math.min(k, neighbourClasses.length);
  for (let t = 0; t < m; t++) votes[neighbourClasses[t]]++;
  let best = 0;
  for (let c = 1; c < classes; c++) if (votes[c] > votes[best]) best = c;
  for (let c = 0; c < classes; c++) votes[c] /= m;
  return { probabilities: votes, predicted: best };
}

/** Options of {@linkcode chooseK}. */
export interface ChooseKOptions {
  /** Candidates (default {@linkcode K_CANDIDATES}). */
  candidates?: readonly number[];
  /** Inner folds at most (default 5). */
  folds?: number;
  /** Seed of the inner split. */
  seed?: number;
}

/** The k chosen and each candidate's inner macro F1. */
export interface KChoice {
  /** The k. */
  readonly k: number;
  /** Candidates tried with their pooled inner macro F1 (empty when there was nothing to validate). */
  readonly scores: { k: number; macro_f1: number }[];
}

/**
 * Chooses k by inner validation on the training rows (see the module doc).
 *
 * @param x The training rows.
 * @param norms {@linkcode rowNorms} of x.data.
 * @param y Class index of each training row (parallel to x.rows).
 * @param classes K.
 * @param options Candidates, folds, seed.
 * @returns The k and the scores.
 */
export function chooseK(
  x: FeatureRows,
  norms: Float64Array,
  y: ArrayLike<number>,
  classes: number,
  options: ChooseKOptions = {},
): KChoice {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < y.length; i++) counts[y[i]]++;
  const smallest = Math.min(...counts.filter((c) => c > 0));
  const folds = Math.min(options.folds ?? 5, smallest);
  if (folds < 2) return { k: 1, scores: [] };
  const fold = stratifiedFolds(y, folds, options.seed ?? 0);
  const innerTrain = Math.min(...Array.from({ length: folds }, (_, f) => fold.filter((g) => g !== f).length));
  const ks = (options.candidates ?? K_CANDIDATES).filter((k) => k <= innerTrain);
  const kmax = Math.max(...ks);
  // Neighbours of every held-out row, once, for all candidates.
  const heldOut: number[] = [];
  const listClasses: number[][] = [];
  for (let f = 0; f < folds; f++) {
    const q: number[] = [];
    const c: number[] = [];
    for (let i = 0; i < y.length; i++) (fold[i] === f ? q : c).push(i);
    const nb = cosineNeighbours(x.data, x.d, norms, q.map((i) => x.rows[i]), c.map((i) => x.rows[i]), kmax);
    q.forEach((i, t) => {
      heldOut.push(i);
      listClasses.push(Array.from(nb[t], (p) => y[c[p]]));
    });
  }
  const truth = heldOut.map((i) => y[i]);
  const scores = ks.map((k) => {
    const votes = listClasses.map((cl) => knnVote(cl, k, classes));
    const report = classificationReport(
      truth,
      votes.map((v) => v.probabilities),
      votes.map((v) => v.predicted),
    );
    return { k, macro_f1: report.metrics.macro_f1 };
  });
  let best = scores[0];
  for (const s of scores) if (s.macro_f1 > best.macro_f1) best = s;
  return { k: best.k, scores };
}
