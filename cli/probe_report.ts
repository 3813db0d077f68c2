/**
 * What `deno task probe` prints and writes: the text report, the `--json` object, the `--predictions`
 * CSV.
 * @module
 */
import type { ClassificationReport, HeadlineMetrics } from "./probe_metrics.ts";
import type { FoldResult, ShotPoint } from "./probe_eval.ts";

/** Everything known about one label column's run. */
export interface LabelOutcome {
  /** The column. */
  readonly label: string;
  /** Its classes, sorted. */
  readonly classes: readonly string[];
  /** Row counts. */
  readonly rows: Readonly<Record<string, number>>;
  /** How the rows were split. */
  readonly evaluation: string;
  /** Pooled report over all scored rows. */
  readonly report: ClassificationReport;
  /** Per fold (one for a split column or an applied classifier). */
  readonly folds: readonly FoldResult[];
  /** Data-efficiency curve, when asked for. */
  readonly shots?: readonly ShotPoint[];
  /** The final model's facts (fitted for --out), when one was fitted. */
  readonly final?: Readonly<Record<string, unknown>>;
}

/** The `--json` object of one label column. */
export function outcomeJson(
  o: LabelOutcome,
  model: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  return {
    label: o.label,
    classes: o.classes,
    model,
    evaluation: o.evaluation,
    rows: o.rows,
    metrics: o.report.metrics,
    per_class: Object.fromEntries(o.classes.map((c, k) => [c, o.report.perClass[k]])),
    confusion: o.report.confusion,
    folds: o.folds,
    ...(o.shots ? { shots: o.shots } : {}),
    ...(o.final ? { final: o.final } : {}),
  };
}

function fmt(v: number | null, digits = 4): string {
  return v === null ? "n/a" : v.toFixed(digits);
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")
  )
    .join("\n");
}

/** The headline metrics as one line. */
export function metricsLine(m: Readonly<Record<keyof HeadlineMetrics, number | null>>): string {
  return `accuracy ${fmt(m.accuracy)}  balanced accuracy ${fmt(m.balanced_accuracy)}  macro F1 ${
    fmt(m.macro_f1)
  }  ROC AUC ${fmt(m.roc_auc)}`;
}

/** The text report of one label column. */
export function outcomeText(o: LabelOutcome, modelText: string, curveMetric: keyof HeadlineMetrics): string {
  const lines: string[] = [];
  lines.push(
    `== ${o.label}: ${o.classes.length} classes (${o.classes.join(", ")}); ${modelText}; ${o.evaluation}`,
  );
  lines.push(`rows: ${Object.entries(o.rows).map(([k, v]) => `${v} ${k.replace(/_/g, " ")}`).join(", ")}`);
  const pooledNote = o.folds.length > 1 ? " (pooled out-of-fold predictions)" : "";
  lines.push(`${metricsLine(o.report.metrics)}${pooledNote}`);
  if (o.folds.length > 1) {
    o.folds.forEach((f, i) => {
      const extra = f.k !== undefined ? `, k ${f.k}` : "";
      lines.push(`  fold ${i + 1}: train ${f.train}, test ${f.test}${extra}: ${metricsLine(f.metrics)}`);
    });
  }
  lines.push("");
  lines.push(
    table([
      ["class", "precision", "recall", "f1", "support"],
      ...o.classes.map((c, k) => {
        const r = o.report.perClass[k];
        return [c, fmt(r.precision), fmt(r.recall), fmt(r.f1), String(r.support)];
      }),
    ]),
  );
  lines.push("");
  lines.push("confusion matrix (rows: true class, columns: predicted):");
  lines.push(
    table([["", ...o.classes], ...o.classes.map((c, k) => [c, ...o.report.confusion[k].map(String)])]),
  );
  const solver = o.folds.map((f) => f.solver).filter((s) => s !== undefined);
  const fitSeconds = o.folds.reduce((a, f) => a + f.fit_ms, 0) / 1000;
  if (solver.length > 0) {
    const it = solver.map((s) => s!.iterations);
    const gmax = Math.max(...solver.map((s) => s!.gradMax));
    const bad = solver.filter((s) => !s!.converged).length;
    lines.push("");
    lines.push(
      `solver: L-BFGS, ${Math.min(...it)}${it.length > 1 ? `-${Math.max(...it)}` : ""} iterations per fit, ` +
        `largest final gradient ${gmax.toExponential(1)}${bad ? `, ${bad} fit(s) NOT converged` : ""}, ${
          fitSeconds.toFixed(2)
        } s fitting`,
    );
  } else if (o.folds.some((f) => f.k !== undefined)) {
    lines.push("");
    lines.push(
      `kNN: k ${[...new Set(o.folds.map((f) => f.k))].join(", ")}, ${fitSeconds.toFixed(2)} s choosing k`,
    );
  }
  if (o.shots) {
    lines.push("");
    lines.push(`data efficiency (${curveMetric}, mean ± sd over seeds; each run averages the folds):`);
    lines.push(
      table([
        ["shots", "rows/class", "runs", curveMetric, "sd"],
        ...o.shots.map((p) => [
          String(p.shots),
          p.rows_per_class.toFixed(1),
          String(p.runs),
          fmt(p.mean[curveMetric]),
          fmt(p.std[curveMetric]),
        ]),
      ]),
    );
  }
  return lines.join("\n");
}

/** One field of a CSV (quoted when it holds a comma, quote or line break). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** One predicted row of the `--predictions` CSV. */
export interface PredictionRow {
  /** The image path. */
  readonly path: string;
  /** The label column (multi-label files only). */
  readonly column?: string;
  /** The true label, "" when unknown. */
  readonly label: string;
  /** The predicted class. */
  readonly predicted: string;
  /** Probability per class name. */
  readonly probabilities: ReadonlyMap<string, number>;
  /** The cross-validation fold that scored it (1-based), when there are folds. */
  readonly fold?: number;
}

/**
 * The `--predictions` CSV: `path`, (`column` with several label columns), `label`, `predicted`, then
 * `prob_<class>` for each class (with several columns, the union of their classes in first-seen order,
 * empty where a class is not one of the row's column), then `fold` under cross-validation.
 */
export function predictionsCsv(
  rows: readonly PredictionRow[],
  classes: readonly string[],
  multi: boolean,
): string {
  const folds = rows.some((r) => r.fold !== undefined);
  const head = [
    "path",
    ...(multi ? ["column"] : []),
    "label",
    "predicted",
    ...classes.map((c) => `prob_${c}`),
    ...(folds ? ["fold"] : []),
  ];
  const lines = [head.map(csvField).join(",")];
  for (const r of rows) {
    const probs = classes.map((c) => {
      const p = r.probabilities.get(c);
      return p === undefined ? "" : String(p);
    });
    const tail = folds ? [r.fold === undefined ? "" : String(r.fold)] : [];
    lines.push(
      [r.path, ...(multi ? [r.column ?? ""] : []), r.label, r.predicted, ...probs, ...tail].map(csvField)
        .join(","),
    );
  }
  return lines.join("\n") + "\n";
}
