/**
 * How `deno task probe` splits labelled rows: stratified K-fold, stratified group K-fold (one group,
 * e.g. one patient, never on both sides), and per-class subsamples for the data-efficiency curve, all
 * from a seeded random number generator so that a run repeats exactly.
 *
 * - Stratified K-fold: each class's rows are shuffled and dealt to the folds in turn, the dealing carrying
 *   on from class to class, so every fold holds each class's count to within one and the fold sizes differ
 *   by at most one.
 * - Stratified group K-fold: groups are shuffled, then taken largest class spread first (the standard
 *   deviation of their class counts, as scikit-learn's `StratifiedGroupKFold` orders them), each going to
 *   the fold where the folds' class proportions stay most even (least summed variance over classes of
 *   the share of the class each fold holds), ties to the smaller fold, then the lower index.
 * @module
 */

/** A seeded generator of floats uniform in [0, 1): mulberry32 over a 32-bit state. */
export interface Rng {
  /** The next float. */
  (): number;
}

/**
 * A generator from `seed` (any integer; the same seed gives the same sequence).
 *
 * @example
 * ```ts
 * const rng = seededRng(42);
 * const u = rng(); // in [0, 1)
 * ```
 */
export function seededRng(seed: number): Rng {
  let s = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Shuffles `items` in place (Fisher-Yates) and returns it. */
export function shuffle<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/**
 * Assigns each row a fold, stratified by class.
 *
 * @param classes Class index of each row (0 to K - 1).
 * @param folds Number of folds (2 or more).
 * @param seed Seed of the shuffle.
 * @returns The fold of each row (0 to folds - 1).
 * @throws {RangeError} When folds < 2 or exceeds the number of rows.
 */
export function stratifiedFolds(classes: ArrayLike<number>, folds: number, seed: number): Int32Array {
  checkFolds(folds, classes.length);
  const rng = seededRng(seed);
  const byClass = rowsByClass(classes);
  const fold = new Int32Array(classes.length);
  let deal = 0;
  for (const rows of byClass) {
    for (const r of shuffle(rows, rng)) fold[r] = deal++ % folds;
  }
  return fold;
}

/**
 * Assigns each row a fold, stratified by class, with all rows of a group in one fold.
 *
 * @param classes Class index of each row.
 * @param groups Group of each row (e.g. a patient id).
 * @param folds Number of folds.
 * @param seed Seed of the shuffle of the groups.
 * @returns The fold of each row.
 * @throws {RangeError} When there are fewer groups than folds.
 */
export function stratifiedGroupFolds(
  classes: ArrayLike<number>,
  groups: readonly string[],
  folds: number,
  seed: number,
): Int32Array {
  checkFolds(folds, classes.length);
  if (groups.length !== classes.length) {
    throw new TypeError(`Cannot split: expected ${classes.length} groups, got ${groups.length}`);
  }
  const K = Math.max(...Array.from(classes)) + 1;
  const members = new Map<string, number[]>();
  groups.forEach((g, i) => {
    const list = members.get(g);
    if (list) list.push(i);
    else members.set(g, [i]);
  });
  if (members.size < folds) {
    throw new RangeError(
      `Cannot split into ${folds} folds: expected at least ${folds} groups, got ${members.size}`,
    );
  }
  const rng = seededRng(seed);
  const entries = shuffle([...members.entries()], rng).map(([name, rows]) => {
    const counts = new Array<number>(K).fill(0);
    for (const r of rows) counts[classes[r]]++;
    const m = rows.length / K;
    const spread = Math.sqrt(counts.reduce((a, c) => a + (c - m) ** 2, 0) / K);
    return { name, rows, counts, spread };
  });
  entries.sort((a, b) => b.spread - a.spread); // stable: the shuffle orders equal spreads
  const totals = new Array<number>(K).fill(0);
  for (let i = 0; i < classes.length; i++) totals[classes[i]]++;
  const foldCounts = Array.from({ length: folds }, () => new Array<number>(K).fill(0));
  const foldSizes = new Array<number>(folds).fill(0);
  const fold = new Int32Array(classes.length);
  for (const e of entries) {
    let best = -1;
    let bestCost = Infinity;
    for (let f = 0; f < folds; f++) {
      // Summed over classes: the variance across folds of the share of the class in each fold.
      let cost = 0;
      for (let k = 0; k < K; k++) {
        if (totals[k] === 0) continue;
        let sum = 0, sq = 0;
        for (let h = 0; h < folds; h++) {
          const share = (foldCounts[h][k] + (h === f ? e.counts[k] : 0)) / totals[k];
          sum += share;
          sq += share * share;
        }
        cost += sq / folds - (sum / folds) ** 2;
      }
      const better = cost < bestCost - 1e-12 ||
        (Math.abs(cost - bestCost) <= 1e-12 && foldSizes[f] < foldSizes[best]);
      if (best < 0 || better) {
        best = f;
        bestCost = Math.min(bestCost, cost);
      }
    }
    for (let k = 0; k < K; k++) foldCounts[best][k] += e.counts[k];
    foldSizes[best] += e.rows.length;
    for (const r of e.rows) fold[r] = best;
  }
  return fold;
}

/**
 * A subsample of `rows` with at most `perClass` rows of each class (all of a class that has fewer),
 * in the order of `rows`.
 *
 * @param rows Candidate row indices.
 * @param classes Class index by row index (`classes[rows[i]]`).
 * @param perClass Rows per class.
 * @param rng The generator (one subsample per call).
 * @returns The chosen row indices.
 */
export function sampleShots(
  rows: ArrayLike<number>,
  classes: ArrayLike<number>,
  perClass: number,
  rng: Rng,
): number[] {
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < rows.length; i++) {
    const c = classes[rows[i]];
    const list = byClass.get(c);
    if (list) list.push(i);
    else byClass.set(c, [i]);
  }
  const keep = new Set<number>();
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    for (const i of shuffle(byClass.get(c)!, rng).slice(0, perClass)) keep.add(i);
  }
  return Array.from(rows).filter((_, i) => keep.has(i));
}

function checkFolds(folds: number, rows: number): void {
  if (!Number.isInteger(folds) || folds < 2) {
    throw new RangeError(`Cannot split: expected 2 or more folds, got ${folds}`);
  }
  if (folds > rows) {
    throw new RangeError(`Cannot split ${rows} rows into ${folds} folds: expected at least one row per fold`);
  }
}

function rowsByClass(classes: ArrayLike<number>): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < classes.length; i++) (out[classes[i]] ??= []).push(i);
  return Array.from(out, (r) => r ?? []);
}
