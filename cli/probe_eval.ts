/**
 * The evaluation of `deno task probe`: the folds (a split column, or stratified / group K-fold), a model
 * fitted on each fold's training rows and scored on its test rows, out-of-fold predictions pooled into
 * one report, and the data-efficiency curve (that many training rows per class, over several seeds).
 *
 * Rows are addressed by position in a {@linkcode LabelTask} (its labelled rows); `task.rows[i]` is the
 * embedding row of position i.
 * @module
 */
import { argmax, type LinearModel, linearProbabilities } from "../models/classifier.ts";
import { chooseK, cosineNeighbours, K_CANDIDATES, knnVote, rowNorms } from "./probe_knn.ts";
import { fitLogisticRegression } from "./probe_logreg.ts";
import {
  type ClassificationReport,
  classificationReport,
  type HeadlineMetrics,
  METRIC_NAMES,
} from "./probe_metrics.ts";
import { sampleShots, seededRng, stratifiedFolds, stratifiedGroupFolds } from "./probe_split.ts";
import type { LabelTask } from "./probe_data.ts";

/** The classifier to fit. */
export type ModelSpec =
  | {
    readonly kind: "logreg";
    /** Inverse regularisation strength. */
    readonly C: number;
    /** Standardise features over the training rows. */
    readonly standardize: boolean;
    /** Gradient tolerance (see probe_logreg.ts). */
    readonly tol: number;
    /** L-BFGS iteration limit. */
    readonly maxIterations: number;
  }
  | {
    readonly kind: "knn";
    /** Fixed k, or undefined to choose it by inner validation. */
    readonly k: number | undefined;
    /** Seed of the inner validation split. */
    readonly seed: number;
  };

/** The embeddings matrix, with the row norms kNN needs (computed on first use). */
export class Matrix {
  #norms: Float64Array | undefined;
  /**
   * @param data [N, D] float32, row-major.
   * @param d D.
   */
  constructor(readonly data: Float32Array, readonly d: number) {}
  /** Euclidean norm of every row. */
  get norms(): Float64Array {
    return this.#norms ??= rowNorms(this.data, this.d);
  }
}

/** A fitted model: predicts embedding rows. */
export interface Fitted {
  /** Class probabilities and predicted class index of each embedding row given. */
  predict(rows: ArrayLike<number>): { probabilities: Float64Array[]; predicted: number[] };
  /** The linear model (logreg). */
  readonly linear?: LinearModel;
  /** The solver's figures (logreg). */
  readonly solver?: { iterations: number; evaluations: number; gradMax: number; converged: boolean };
  /** k used (knn), and the inner validation scores when it was chosen. */
  readonly k?: number;
  /** Inner validation macro F1 per candidate k. */
  readonly kScores?: { k: number; macro_f1: number }[];
  /** Fitting time, ms. */
  readonly ms: number;
}

/**
 * Fits `spec` on embedding rows `rows` with class indices `y`.
 *
 * @param m The matrix.
 * @param rows Embedding rows.
 * @param y Class index of each.
 * @param classes Class names (sorted).
 * @param spec The model.
 * @returns The fitted model.
 */
export function fitModel(
  m: Matrix,
  rows: readonly number[],
  y: ArrayLike<number>,
  classes: readonly string[],
  spec: ModelSpec,
): Fitted {
  const t0 = performance.now();
  const K = classes.length;
  if (spec.kind === "logreg") {
    const fit = fitLogisticRegression({ data: m.data, d: m.d, rows }, y, classes, {
      C: spec.C,
      standardize: spec.standardize,
      tol: spec.tol,
      maxIterations: spec.maxIterations,
    });
    const model = fit.model;
    return {
      linear: model,
      solver: {
        iterations: fit.iterations,
        evaluations: fit.evaluations,
        gradMax: fit.gradMax,
        converged: fit.converged,
      },
      ms: performance.now() - t0,
      predict(queries) {
        const probabilities = Array.from(queries, (r) => linearProbabilities(model, m.data, r * m.d));
        return { probabilities, predicted: probabilities.map(argmax) };
      },
    };
  }
  const choice = spec.k === undefined
    ? chooseK({ data: m.data, d: m.d, rows }, m.norms, y, K, { candidates: K_CANDIDATES, seed: spec.seed })
    : { k: spec.k, scores: undefined };
  const k = Math.min(choice.k, rows.length);
  return {
    k,
    kScores: choice.scores,
    ms: performance.now() - t0,
    predict(queries) {
      const nb = cosineNeighbours(m.data, m.d, m.norms, queries, rows, k);
      const votes = nb.map((list) => knnVote(Array.from(list, (p) => y[p]), k, K));
      return { probabilities: votes.map((v) => v.probabilities), predicted: votes.map((v) => v.predicted) };
    },
  };
}

/** Training and test positions of each fold. */
export interface FoldPlan {
  /** The folds. */
  readonly folds: readonly { train: number[]; test: number[] }[];
  /** Positions in no fold (a split value other than train/test). */
  readonly ignored: number;
  /** How the folds were made, for the report. */
  readonly description: string;
}

/**
 * One fold from a split column: `train` rows fit, `test` rows are scored, any other value is ignored.
 *
 * @param task The task.
 * @param split The split column's value of each task position.
 * @param column The column's name, for messages.
 */
export function columnSplit(task: LabelTask, split: readonly string[], column: string): FoldPlan {
  const train: number[] = [];
  const test: number[] = [];
  split.forEach((v, i) => {
    if (v === "train") train.push(i);
    else if (v === "test") test.push(i);
  });
  if (train.length === 0 || test.length === 0) {
    throw new TypeError(
      `Cannot split on "${column}": expected rows "train" and rows "test", got ${train.length} train and ${test.length} test rows labelled in "${task.column}"`,
    );
  }
  const plan = {
    folds: [{ train, test }],
    ignored: split.length - train.length - test.length,
    description: `split column "${column}"`,
  };
  checkPlan(task, plan);
  return plan;
}

/**
 * Stratified K-fold, or stratified group K-fold when `groups` is given.
 *
 * @param task The task.
 * @param folds K.
 * @param seed Seed of the shuffle.
 * @param groups Group of each task position (e.g. patient), or undefined.
 */
export function kFoldPlan(
  task: LabelTask,
  folds: number,
  seed: number,
  groups?: readonly string[],
): FoldPlan {
  const fold = groups
    ? stratifiedGroupFolds(task.y, groups, folds, seed)
    : stratifiedFolds(task.y, folds, seed);
  const plan = {
    folds: Array.from({ length: folds }, (_, f) => {
      const train: number[] = [];
      const test: number[] = [];
      fold.forEach((g, i) => (g === f ? test : train).push(i));
      return { train, test };
    }),
    ignored: 0,
    description: `${groups ? "stratified group" : "stratified"} ${folds}-fold, seed ${seed}`,
  };
  checkPlan(task, plan);
  return plan;
}

/** Every fold trains on every class and tests on something. */
function checkPlan(task: LabelTask, plan: FoldPlan): void {
  plan.folds.forEach(({ train, test }, f) => {
    const where = plan.folds.length > 1 ? `fold ${f + 1} of ${plan.folds.length}` : "the split";
    if (test.length === 0) throw new TypeError(`Cannot evaluate ${where}: it has no test row`);
    const inTrain = new Set(train.map((i) => task.y[i]));
    const missing = task.classes.filter((_, k) => !inTrain.has(k));
    if (missing.length > 0) {
      const counts = missing.map((c) =>
        `"${c}" (${task.y.filter((k) => task.classes[k] === c).length} rows)`
      );
      throw new TypeError(
        `Cannot train ${where} on column "${task.column}": no training row of class ${counts.join(", ")}; ` +
          (plan.folds.length > 1
            ? "use fewer --folds or drop the class"
            : "the test rows hold a label the training rows never show"),
      );
    }
  });
}

/** One fold's figures. */
export interface FoldResult {
  /** Training rows. */
  readonly train: number;
  /** Test rows. */
  readonly test: number;
  /** Headline metrics of its test rows. */
  readonly metrics: HeadlineMetrics;
  /** Fitting time, ms. */
  readonly fit_ms: number;
  /** kNN: k used. */
  readonly k?: number;
  /** logreg: solver iterations, evaluations, final gradient, convergence. */
  readonly solver?: Fitted["solver"];
}

/** The evaluation of one task. */
export interface TaskResult {
  /** Per fold. */
  readonly folds: FoldResult[];
  /** Pooled over every fold's test rows (out-of-fold predictions). */
  readonly pooled: ClassificationReport;
  /** Each scored position with its probabilities and predicted class, in task order. */
  readonly predictions: { position: number; fold: number; probabilities: Float64Array; predicted: number }[];
}

/**
 * Fits and scores every fold.
 *
 * @param m The matrix.
 * @param task The task.
 * @param plan The folds.
 * @param spec The model.
 * @param progress Called after each fold.
 */
export function evaluate(
  m: Matrix,
  task: LabelTask,
  plan: FoldPlan,
  spec: ModelSpec,
  progress: (done: number, total: number) => void = () => {},
): TaskResult {
  const folds: FoldResult[] = [];
  const predictions: TaskResult["predictions"] = [];
  plan.folds.forEach(({ train, test }, f) => {
    const fitted = fitModel(
      m,
      train.map((i) => task.rows[i]),
      train.map((i) => task.y[i]),
      task.classes,
      spec,
    );
    const out = fitted.predict(test.map((i) => task.rows[i]));
    const report = classificationReport(test.map((i) => task.y[i]), out.probabilities, out.predicted);
    folds.push({
      train: train.length,
      test: test.length,
      metrics: report.metrics,
      fit_ms: fitted.ms,
      ...(fitted.k !== undefined ? { k: fitted.k } : {}),
      ...(fitted.solver ? { solver: fitted.solver } : {}),
    });
    test.forEach((position, t) =>
      predictions.push({
        position,
        fold: f,
        probabilities: out.probabilities[t],
        predicted: out.predicted[t],
      })
    );
    progress(f + 1, plan.folds.length);
  });
  predictions.sort((a, b) => a.position - b.position);
  const pooled = classificationReport(
    predictions.map((p) => task.y[p.position]),
    predictions.map((p) => p.probabilities),
    predictions.map((p) => p.predicted),
  );
  return { folds, pooled, predictions };
}

/** One point of the data-efficiency curve. */
export interface ShotPoint {
  /** Training rows per class asked for ("all": every training row). */
  readonly shots: number | "all";
  /** Mean training rows per class actually used (a class with fewer rows gives all it has). */
  readonly rows_per_class: number;
  /** Runs (seeds); each run averages the folds. */
  readonly runs: number;
  /** Mean over runs of each headline metric (null where no run defines it). */
  readonly mean: Record<keyof HeadlineMetrics, number | null>;
  /** Standard deviation over runs (n - 1 in the denominator; 0 for one run). */
  readonly std: Record<keyof HeadlineMetrics, number | null>;
}

/**
 * The data-efficiency curve: for each shot count and seed, every fold trains on that many of its
 * training rows per class (drawn with the seed) and is scored on its whole test part.
 *
 * @param m The matrix.
 * @param task The task.
 * @param plan The folds.
 * @param spec The model.
 * @param options Shot counts, seeds, base seed, progress.
 */
export function shotsCurve(
  m: Matrix,
  task: LabelTask,
  plan: FoldPlan,
  spec: ModelSpec,
  options: {
    shots: readonly (number | "all")[];
    seeds: number;
    seed: number;
    progress?: (done: number, total: number) => void;
  },
): ShotPoint[] {
  const total = options.shots.reduce((a: number, s) => a + (s === "all" ? 1 : options.seeds), 0) *
    plan.folds.length;
  let done = 0;
  return options.shots.map((shots, si) => {
    const runs = shots === "all" ? 1 : options.seeds;
    const perRun: HeadlineMetrics[] = [];
    let rowsPerClass = 0;
    for (let run = 0; run < runs; run++) {
      const rng = seededRng(options.seed * 1_000_003 + si * 7919 + run);
      const foldMetrics = plan.folds.map(({ train, test }) => {
        const chosen = shots === "all" ? train : sampleShots(train, task.y, shots, rng);
        rowsPerClass += chosen.length / task.classes.length / plan.folds.length / runs;
        const fitted = fitModel(
          m,
          chosen.map((i) => task.rows[i]),
          chosen.map((i) => task.y[i]),
          task.classes,
          spec,
        );
        const out = fitted.predict(test.map((i) => task.rows[i]));
        options.progress?.(++done, total);
        return classificationReport(test.map((i) => task.y[i]), out.probabilities, out.predicted).metrics;
      });
      perRun.push(averageMetrics(foldMetrics).mean as unknown as HeadlineMetrics);
    }
    const { mean, std } = averageMetrics(perRun);
    return { shots, rows_per_class: rowsPerClass, runs, mean, std };
  });
}

/** Mean and standard deviation (n - 1) of each metric over `list`, skipping nulls. */
export function averageMetrics(list: readonly HeadlineMetrics[]): {
  mean: Record<keyof HeadlineMetrics, number | null>;
  std: Record<keyof HeadlineMetrics, number | null>;
} {
  const mean = {} as Record<keyof HeadlineMetrics, number | null>;
  const std = {} as Record<keyof HeadlineMetrics, number | null>;
  for (const name of METRIC_NAMES) {
    const values = list.map((x) => x[name]).filter((v): v is number => v !== null);
    if (values.length === 0) {
      mean[name] = std[name] = null;
      continue;
    }
    const mu = values.reduce((a, b) => a + b, 0) / values.length;
    mean[name] = mu;
    std[name] = values.length < 2
      ? 0
      : Math.sqrt(values.reduce((a, v) => a + (v - mu) ** 2, 0) / (values.length - 1));
  }
  return { mean, std };
}
