/**
 * The command line of `deno task probe`: its help text and the parsed options (cli/probe.ts runs them).
 * @module
 */
import { parseArgs } from "node:util";
import type { ModelSpec } from "./probe_eval.ts";
import { K_CANDIDATES } from "./probe_knn.ts";
import { DEFAULT_TOL } from "./probe_logreg.ts";
import { METRIC_NAMES, type MetricName } from "./probe_metrics.ts";

/** The `--help` text. */
export const HELP = `deno task probe: train and evaluate a classifier on embeddings

Usage:
  deno task probe --embeddings E --labels L.csv --label COLUMN[,COLUMN...] [options]
  deno task probe --embeddings E --classifier classifier.json [--labels L.csv] [--predictions P.csv]

Inputs:
  --embeddings FILE     output of deno task embed: .npy (with FILE.json or FILE.paths.txt beside it),
                        .jsonl, .parquet or .safetensors
  --labels FILE.csv     a CSV with a path column (path, else file, filename, image; relative paths are
                        relative to the CSV's folder) joined to the embeddings on the normalised path
  --label A[,B,...]     the label column; several: one model per column (multi-label). Empty cells are
                        unlabelled: those rows are skipped and counted

Model:
  --model logreg|knn    logreg (default): L2 logistic regression, scikit-learn's objective for
                        LogisticRegression(C) (binary for two classes, multinomial for more), solved by
                        L-BFGS to max |gradient| <= --tol; knn: cosine k-nearest neighbours
  --C X                 inverse regularisation strength (default 1)
  --standardize         standardise each feature over the training rows first (mean 0, sd 1)
  --tol X               gradient tolerance of the objective / (C x rows) (default ${DEFAULT_TOL})
  --max-iter N          L-BFGS iteration limit (default 10000)
  --k N                 kNN neighbours (default: chosen from ${K_CANDIDATES.join(",")} by inner 5-fold
                        validation macro F1 on the training rows)

Evaluation:
  --split-column COL    rows "train" fit, rows "test" are scored, other values are ignored
  --folds N             otherwise stratified N-fold cross-validation (default 5); metrics are those of the
                        pooled out-of-fold predictions, each fold's in "folds"
  --group-column COL    keep each group (e.g. patient) on one side: stratified group K-fold, or, with
                        --split-column, a check that no group is on both sides
  --seed N              seed of the folds, the kNN inner split and the shots (default 0)

Data efficiency:
  --shots LIST          e.g. 1,2,5,10,25,50,all: train on that many rows per class (of each fold's
                        training rows) and score the same test rows; prints the curve
  --shot-seeds N        draws per shot count (default 5); the curve gives mean and sd over them
  --curve-metric NAME   accuracy, balanced_accuracy, macro_f1 (default) or roc_auc
  --plot FILE.svg       draw the curve

Outputs:
  --predictions FILE    CSV of the scored rows (test rows, or out-of-fold): path, label, predicted,
                        prob_<class>..., and under K-fold the fold; with several label columns also
                        "column" after path
  --out FILE.json       the classifier fitted on all training rows (logreg): classes, weights,
                        intercepts, standardisation, the embedding model's facts
  --classifier FILE     apply a classifier written by --out instead of training: refused for
                        embeddings of another model; scored against --labels when given
  --json                print one JSON object on stdout: {"classes", "metrics", "folds", ...}; with
                        several label columns {"labels": [...], "metrics": their mean}
  --quiet               no progress on stderr
  --verbose             stack traces
  --help                show this help

Exit codes: 0 success, 1 bad data (files, columns, labels, another model's embeddings), 2 bad command line.`;

/** Parsed options. */
export interface Options {
  embeddings: string;
  labels?: string;
  label: string[];
  classifier?: string;
  spec: ModelSpec;
  splitColumn?: string;
  groupColumn?: string;
  folds: number;
  seed: number;
  shots?: (number | "all")[];
  shotSeeds: number;
  curveMetric: MetricName;
  plot?: string;
  predictions?: string;
  out?: string;
  json: boolean;
  quiet: boolean;
  verbose: boolean;
}

/** A bad command line (exit code 2). */
export class UsageError extends Error {}

/**
 * Parses and checks the arguments.
 *
 * @param args Command-line arguments.
 * @returns The options, or "help".
 * @throws {UsageError} (or parseArgs' TypeError) for a bad command line.
 */
export function parseOptions(args: string[]): Options | "help" {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      embeddings: { type: "string" },
      labels: { type: "string" },
      label: { type: "string" },
      classifier: { type: "string" },
      model: { type: "string" },
      C: { type: "string" },
      standardize: { type: "boolean", default: false },
      tol: { type: "string" },
      "max-iter": { type: "string" },
      k: { type: "string" },
      "split-column": { type: "string" },
      "group-column": { type: "string" },
      folds: { type: "string" },
      seed: { type: "string" },
      shots: { type: "string" },
      "shot-seeds": { type: "string" },
      "curve-metric": { type: "string" },
      plot: { type: "string" },
      predictions: { type: "string" },
      out: { type: "string" },
      json: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      verbose: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return "help";
  const bad = (m: string): never => {
    throw new UsageError(m);
  };
  if (positionals.length > 0) bad(`unexpected argument "${positionals[0]}"`);
  if (!values.embeddings) bad("--embeddings is required");
  const number = (name: string, v: string | undefined, min: number, integer: boolean) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min) {
      bad(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got "${v}"`);
    }
    return n;
  };
  const positive = (name: string, v: string | undefined) => {
    const n = number(name, v, 0, false);
    if (n === 0) bad(`--${name} must be > 0, got "${v}"`);
    return n;
  };
  const model = values.model ?? "logreg";
  if (model !== "logreg" && model !== "knn") bad(`--model must be "logreg" or "knn", got "${model}"`);
  if (model === "knn" && (values.C !== undefined || values.standardize || values.tol || values["max-iter"])) {
    bad("--C, --standardize, --tol and --max-iter are options of --model logreg");
  }
  if (model === "logreg" && values.k !== undefined) bad("--k is an option of --model knn");
  const seed = number("seed", values.seed, 0, true) ?? 0;
  const spec: ModelSpec = model === "logreg"
    ? {
      kind: "logreg",
      C: positive("C", values.C) ?? 1,
      standardize: values.standardize,
      tol: positive("tol", values.tol) ?? DEFAULT_TOL,
      maxIterations: number("max-iter", values["max-iter"], 1, true) ?? 10_000,
    }
    : { kind: "knn", k: number("k", values.k, 1, true), seed };
  const label = values.label?.split(",").map((s) => s.trim()).filter((s) => s !== "") ?? [];
  if (values.label !== undefined && label.length === 0) bad("--label is empty");
  if (new Set(label).size !== label.length) bad(`--label names a column twice: "${values.label}"`);
  if (values.classifier) {
    for (const f of ["out", "shots", "plot", "split-column", "group-column", "folds", "model"] as const) {
      if (values[f] !== undefined) {
        bad(`--${f} is not used with --classifier (it applies a trained classifier)`);
      }
    }
    if (label.length > 0 && !values.labels) bad("--label needs --labels");
  } else {
    if (!values.labels) bad("--labels is required (or --classifier to apply a trained classifier)");
    if (label.length === 0) bad("--label is required");
  }
  if (values["split-column"] !== undefined && values.folds !== undefined) {
    bad("--folds and --split-column exclude each other");
  }
  const folds = number("folds", values.folds, 2, true) ?? 5;
  let shots: (number | "all")[] | undefined;
  if (values.shots !== undefined) {
    shots = values.shots.split(",").map((s) => s.trim()).map((s) => {
      if (s === "all") return "all" as const;
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) bad(`--shots must list integers >= 1 or "all", got "${s}"`);
      return n;
    });
    if (shots.length === 0) bad("--shots is empty");
  }
  if (values.plot !== undefined && !shots) bad("--plot draws the --shots curve: give --shots");
  if (values.plot !== undefined && !values.plot.toLowerCase().endsWith(".svg")) {
    bad(`--plot must end in .svg, got "${values.plot}"`);
  }
  const curveMetric = values["curve-metric"] ?? "macro_f1";
  if (!(METRIC_NAMES as readonly string[]).includes(curveMetric)) {
    bad(`--curve-metric must be one of ${METRIC_NAMES.join(", ")}, got "${curveMetric}"`);
  }
  if (values.out !== undefined && model === "knn") {
    bad("--out writes a linear classifier: use it with --model logreg (a kNN model is its training set)");
  }
  if (values.out !== undefined && !values.out.toLowerCase().endsWith(".json")) {
    bad(`--out must end in .json, got "${values.out}"`);
  }
  return {
    embeddings: values.embeddings!,
    labels: values.labels,
    label,
    classifier: values.classifier,
    spec,
    splitColumn: values["split-column"],
    groupColumn: values["group-column"],
    folds,
    seed,
    shots,
    shotSeeds: number("shot-seeds", values["shot-seeds"], 1, true) ?? 5,
    curveMetric: curveMetric as MetricName,
    plot: values.plot,
    predictions: values.predictions,
    out: values.out,
    json: values.json,
    quiet: values.quiet,
    verbose: values.verbose,
  };
}

/** The model's settings, as the JSON output and the classifier file state them. */
export function modelFacts(spec: ModelSpec): Record<string, unknown> {
  return spec.kind === "logreg"
    ? {
      kind: "logreg",
      C: spec.C,
      standardize: spec.standardize,
      solver:
        "L-BFGS (20 correction pairs, strong Wolfe line search; rank-128 Nyström preconditioner on large problems)",
      tol: spec.tol,
      max_iter: spec.maxIterations,
    }
    : {
      kind: "knn",
      metric: "cosine",
      k: spec.k ?? `chosen from ${K_CANDIDATES.join(",")} by inner macro F1`,
    };
}

/** The model in a few words, for the text report. */
export function modelText(spec: ModelSpec): string {
  return spec.kind === "logreg"
    ? `logreg C=${spec.C}${spec.standardize ? ", standardised" : ""}, tol ${spec.tol}`
    : `cosine kNN, k ${spec.k ?? "by inner validation"}`;
}
