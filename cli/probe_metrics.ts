/**
 * Classification metrics of `deno task probe`, defined as scikit-learn 1.2 defines them:
 *
 * - accuracy: share of rows predicted right.
 * - balanced accuracy: mean recall over the classes present in the true labels (`balanced_accuracy_score`).
 * - macro F1: mean F1 over the classes present in the true or the predicted labels; a class with no true
 *   and no predicted row does not count; 0 where precision + recall is 0 (`f1_score(average="macro")`).
 * - ROC AUC: two classes, of the second class's probability; more, the mean over classes of each class's
 *   one-vs-rest AUC (`roc_auc_score(multi_class="ovr", average="macro")`). AUC counts tied scores as half
 *   (the Mann-Whitney statistic with mid-ranks, which equals the trapezoidal area under the ROC curve).
 *   Undefined (null) when a class of the model has no true row or every row is of one class, where
 *   scikit-learn raises.
 * - per class: precision (0 when nothing is predicted as it), recall, F1, support; the confusion matrix,
 *   rows true, columns predicted, in class order.
 * @module
 */

/** Precision, recall, F1 and support of one class. */
export interface ClassReport {
  /** TP / (TP + FP), 0 when nothing is predicted as the class. */
  readonly precision: number;
  /** TP / (TP + FN), 0 when the class has no true row. */
  readonly recall: number;
  /** 2PR / (P + R), 0 when P + R = 0. */
  readonly f1: number;
  /** True rows of the class. */
  readonly support: number;
}

/** The headline metrics (the `metrics` object of `--json`). */
export interface HeadlineMetrics {
  /** Share right. */
  readonly accuracy: number;
  /** Mean recall over the classes present. */
  readonly balanced_accuracy: number;
  /** Mean F1 over the classes present in truth or prediction. */
  readonly macro_f1: number;
  /** ROC AUC (see the module doc), null when undefined. */
  readonly roc_auc: number | null;
}

/** Everything {@linkcode classificationReport} computes. */
export interface ClassificationReport {
  /** The headline metrics. */
  readonly metrics: HeadlineMetrics;
  /** One report per class, in class order. */
  readonly perClass: ClassReport[];
  /** [true class][predicted class] counts. */
  readonly confusion: number[][];
  /** Rows scored. */
  readonly rows: number;
}

/**
 * The area under the ROC curve of `scores` for the rows where `positive` is true: the probability that a
 * positive row scores above a negative one, ties counting one half.
 *
 * @returns The AUC, or null without a positive or a negative row.
 */
export function rocAuc(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number | null {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let rankSum = 0; // sum of the positives' mid-ranks (1-based)
  let positives = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]] === scores[order[i]]) j++;
    const midRank = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) {
      if (positive[order[t]]) {
        rankSum += midRank;
        positives++;
      }
    }
    i = j + 1;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return null;
  return (rankSum - positives * (positives + 1) / 2) / (positives * negatives);
}

/**
 * All metrics of predictions against the truth.
 *
 * @param truth True class index of each row (0 to K - 1).
 * @param probabilities Each row's K class probabilities.
 * @param predicted Predicted class index of each row (default: the most probable, ties to the first).
 * @returns Headline metrics, per-class reports, confusion matrix.
 * @throws {TypeError} When the lengths differ or there is no row.
 */
export function classificationReport(
  truth: ArrayLike<number>,
  probabilities: readonly ArrayLike<number>[],
  predicted?: ArrayLike<number>,
): ClassificationReport {
  const n = truth.length;
  if (n === 0) throw new TypeError("Cannot score: expected at least one row, got none");
  if (probabilities.length !== n) {
    throw new TypeError(`Cannot score: expected ${n} probability rows, got ${probabilities.length}`);
  }
  const K = probabilities[0].length;
  const pred = predicted ?? probabilities.map((p) => {
    let best = 0;
    for (let k = 1; k < K; k++) if (p[k] > p[best]) best = k;
    return best;
  });
  if (pred.length !== n) throw new TypeError(`Cannot score: expected ${n} predictions, got ${pred.length}`);
  const confusion = Array.from({ length: K }, () => new Array<number>(K).fill(0));
  for (let i = 0; i < n; i++) confusion[truth[i]][pred[i]]++;
  let right = 0;
  const perClass: ClassReport[] = [];
  for (let k = 0; k < K; k++) {
    right += confusion[k][k];
    const support = confusion[k].reduce((a, b) => a + b, 0);
    const predictedAs = confusion.reduce((a, row) => a + row[k], 0);
    const precision = predictedAs === 0 ? 0 : confusion[k][k] / predictedAs;
    const recall = support === 0 ? 0 : confusion[k][k] / support;
    const f1 = precision + recall === 0 ? 0 : 2 * precision * recall / (precision + recall);
    perClass.push({ precision, recall, f1, support });
  }
  const present = perClass.map((c) => c.support > 0);
  const seen = perClass.map((c, k) => c.support > 0 || confusion.some((row) => row[k] > 0));
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const balanced = mean(perClass.filter((_, k) => present[k]).map((c) => c.recall));
  const macroF1 = mean(perClass.filter((_, k) => seen[k]).map((c) => c.f1));
  let auc: number | null;
  if (K === 2) {
    auc = rocAuc(probabilities.map((p) => p[1]), Array.from(truth, (t) => t === 1));
  } else {
    const aucs = Array.from(
      { length: K },
      (_, k) => rocAuc(probabilities.map((p) => p[k]), Array.from(truth, (t) => t === k)),
    );
    auc = aucs.some((a) => a === null) ? null : mean(aucs as number[]);
  }
  return {
    metrics: { accuracy: right / n, balanced_accuracy: balanced, macro_f1: macroF1, roc_auc: auc },
    perClass,
    confusion,
    rows: n,
  };
}

/** Names of the headline metrics, in report order. */
export const METRIC_NAMES = ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc"] as const;
/** One of {@linkcode METRIC_NAMES}. */
export type MetricName = typeof METRIC_NAMES[number];
