/**
 * `deno task probe`: trains and evaluates a small classifier (L2 logistic regression, or cosine kNN) on
 * the embeddings of `deno task embed` against a labels CSV, reports scikit-learn's metrics, draws the
 * data-efficiency curve, writes out-of-fold predictions and the fitted classifier (`models/classifier.ts`),
 * or applies a saved classifier to new embeddings.
 * @module
 */
import {
  applyClassifier,
  type Classifier,
  CLASSIFIER_FORMAT,
  CLASSIFIER_VERSION,
  classifierIdentityMismatch,
  linearModelToHead,
  parseClassifier,
} from "../models/classifier.ts";
import {
  type Embeddings,
  type Join,
  joinLabels,
  type LabelTable,
  type LabelTask,
  labelTask,
  readEmbeddings,
  readLabels,
  requireColumn,
} from "./probe_data.ts";
import {
  averageMetrics,
  columnSplit,
  evaluate,
  fitModel,
  type FoldPlan,
  kFoldPlan,
  Matrix,
  shotsCurve,
} from "./probe_eval.ts";
import { HELP, modelFacts, modelText, type Options, parseOptions } from "./probe_args.ts";
import { classificationReport } from "./probe_metrics.ts";
import { curveSvg } from "./probe_plot.ts";
import {
  type LabelOutcome,
  metricsLine,
  outcomeJson,
  outcomeText,
  type PredictionRow,
  predictionsCsv,
} from "./probe_report.ts";
import { DenoOutputFs, writeAtomically as writeAtomicallyOn } from "./output_files.ts";

/** Writes a file through a temporary file and a rename. */
function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  return writeAtomicallyOn(new DenoOutputFs(), path, bytes);
}

/**
 * Runs the command with `args`.
 *
 * @param args Command-line arguments.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  let o: Options;
  try {
    const parsed = parseOptions(args);
    if (parsed === "help") {
      console.log(HELP);
      return 0;
    }
    o = parsed;
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\nRun with --help for usage.`);
    return 2;
  }
  try {
    return o.classifier ? await runApply(o) : await runTrain(o);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    if (o.verbose && (e as Error).stack) console.error((e as Error).stack);
    return 1;
  }
}

/** Loads embeddings and labels and joins them, reporting what did not match. */
async function loadJoined(o: Options, log: (line: string) => void) {
  const embeddings = await readEmbeddings(o.embeddings);
  const labels = await readLabels(o.labels!);
  const join = joinLabels(embeddings, labels);
  log(
    `probe: ${embeddings.paths.length} embeddings of ${embeddings.d} values, ${labels.rows.length} label rows, ` +
      `${join.pairs.length} joined (relative embedding paths taken from the ${join.base})`,
  );
  if (join.missingEmbeddings.length > 0) {
    log(
      `warning: ${join.missingEmbeddings.length} label rows have no embedding, e.g. "${
        join.missingEmbeddings[0]
      }"`,
    );
  }
  if (labels.duplicates > 0) log(`warning: ${labels.duplicates} label rows repeat a path (the first kept)`);
  return { embeddings, labels, join };
}

function columnValues(task: LabelTask, labels: LabelTable, column: string): string[] {
  return task.labelRows.map((r) => labels.rows[r].values[column]);
}

function plan(o: Options, task: LabelTask, labels: LabelTable): FoldPlan {
  const groups = o.groupColumn ? columnValues(task, labels, o.groupColumn) : undefined;
  if (groups) {
    const empty = groups.findIndex((g) => g === "");
    if (empty >= 0) {
      throw new TypeError(
        `Cannot group by "${o.groupColumn}": row "${labels.rows[task.labelRows[empty]].path}" has no value`,
      );
    }
  }
  if (o.splitColumn) {
    const p = columnSplit(task, columnValues(task, labels, o.splitColumn), o.splitColumn);
    if (groups) {
      const side = new Map<string, string>();
      for (const [name, rows] of [["train", p.folds[0].train], ["test", p.folds[0].test]] as const) {
        for (const i of rows) {
          const other = side.get(groups[i]);
          if (other && other !== name) {
            throw new TypeError(
              `Cannot use split column "${o.splitColumn}": group "${
                groups[i]
              }" of "${o.groupColumn}" has rows in train and in test`,
            );
          }
          side.set(groups[i], name);
        }
      }
    }
    return p;
  }
  return kFoldPlan(task, o.folds, o.seed, groups);
}

async function runTrain(o: Options): Promise<number> {
  const t0 = performance.now();
  const log = (line: string) => !o.quiet && console.error(line);
  const { embeddings, labels, join } = await loadJoined(o, log);
  for (const c of o.label) requireColumn(labels, c, "--label");
  if (o.splitColumn) requireColumn(labels, o.splitColumn, "--split-column");
  if (o.groupColumn) requireColumn(labels, o.groupColumn, "--group-column");
  const m = new Matrix(embeddings.data, embeddings.d);
  const outcomes: LabelOutcome[] = [];
  const heads = [];
  const predictionRows: PredictionRow[] = [];
  let notConverged = 0;
  for (const column of o.label) {
    const task = labelTask(join, labels, column);
    const p = plan(o, task, labels);
    const result = evaluate(m, task, p, o.spec, (done, total) => {
      if (total > 1) log(`probe: ${column}: fold ${done}/${total} done`);
    });
    notConverged += result.folds.filter((f) => f.solver && !f.solver.converged).length;
    let shots;
    if (o.shots) {
      shots = shotsCurve(m, task, p, o.spec, {
        shots: o.shots,
        seeds: o.shotSeeds,
        seed: o.seed,
        progress: (done, total) => {
          if (done === total || done % 10 === 0) log(`probe: ${column}: shots ${done}/${total} fits`);
        },
      });
    }
    let final;
    if (o.out) {
      // Fitted on the training rows: the split's train rows, or every labelled row under K-fold.
      const train = o.splitColumn ? p.folds[0].train : task.rows.map((_, i) => i);
      const fitted = fitModel(
        m,
        train.map((i) => task.rows[i]),
        train.map((i) => task.y[i]),
        task.classes,
        o.spec,
      );
      heads.push(linearModelToHead(column, fitted.linear!));
      final = { train: train.length, ...fitted.solver, fit_ms: fitted.ms };
      if (!fitted.solver!.converged) notConverged++;
    }
    outcomes.push({
      label: column,
      classes: task.classes,
      rows: {
        joined: join.pairs.length,
        labelled: task.rows.length,
        unlabelled: task.unlabelled,
        ...(o.splitColumn
          ? { train: p.folds[0].train.length, test: p.folds[0].test.length, ignored: p.ignored }
          : { scored: result.predictions.length }),
      },
      evaluation: p.description,
      report: result.pooled,
      folds: result.folds,
      shots,
      final,
    });
    for (const pr of result.predictions) {
      predictionRows.push({
        path: labels.rows[task.labelRows[pr.position]].path,
        column,
        label: task.classes[task.y[pr.position]],
        predicted: task.classes[pr.predicted],
        probabilities: new Map(task.classes.map((c, k) => [c, pr.probabilities[k]])),
        ...(p.folds.length > 1 ? { fold: pr.fold + 1 } : {}),
      });
    }
  }
  if (notConverged > 0) {
    log(
      `warning: ${notConverged} fit(s) stopped before max |gradient| <= ${
        (o.spec as { tol: number }).tol
      }; raise --max-iter`,
    );
  }
  if (o.predictions) {
    const classes = [...new Set(outcomes.flatMap((x) => x.classes))];
    await writeAtomically(
      o.predictions,
      new TextEncoder().encode(predictionsCsv(predictionRows, classes, o.label.length > 1)),
    );
  }
  if (o.plot && o.shots) {
    const svg = curveSvg(
      `${o.label.join(", ")}: ${modelText(o.spec)}`,
      o.curveMetric,
      outcomes.map((x) => ({
        name: x.label,
        points: x.shots!.map((pt) => ({
          x: String(pt.shots),
          y: pt.mean[o.curveMetric],
          sd: pt.std[o.curveMetric],
        })),
      })),
    );
    await writeAtomically(o.plot, new TextEncoder().encode(svg));
  }
  if (o.out) {
    const classifier: Classifier = {
      format: CLASSIFIER_FORMAT,
      version: CLASSIFIER_VERSION,
      embedding: embeddings.identity,
      training: {
        ...modelFacts(o.spec),
        objective:
          "C * sum(logloss) + 1/2 ||W||^2, intercept not penalised (scikit-learn LogisticRegression)",
        embeddings: o.embeddings,
        labels: o.labels,
        rows: Object.fromEntries(outcomes.map((x) => [x.label, (x.final as { train: number }).train])),
        evaluation: outcomes.map((x) => x.evaluation)[0],
        created: new Date().toISOString(),
      },
      heads,
    };
    await writeAtomically(o.out, new TextEncoder().encode(JSON.stringify(classifier) + "\n"));
  }
  const seconds = (performance.now() - t0) / 1000;
  if (o.json) {
    const objects = outcomes.map((x) => outcomeJson(x, modelFacts(o.spec)));
    const json = objects.length === 1 ? objects[0] : {
      labels: objects,
      metrics: averageMetrics(outcomes.map((x) => x.report.metrics)).mean,
    };
    console.log(JSON.stringify({ ...json, seconds }, null, 2));
  } else {
    console.log(outcomes.map((x) => outcomeText(x, modelText(o.spec), o.curveMetric)).join("\n\n"));
    if (outcomes.length > 1) {
      console.log(
        `\nmean over ${outcomes.length} label columns: ${
          metricsLine(averageMetrics(outcomes.map((x) => x.report.metrics)).mean)
        }`,
      );
    }
    console.log(`\n${seconds.toFixed(2)} s`);
  }
  return 0;
}

async function runApply(o: Options): Promise<number> {
  const t0 = performance.now();
  const log = (line: string) => !o.quiet && console.error(line);
  let text: string;
  try {
    text = await Deno.readTextFile(o.classifier!);
  } catch (e) {
    throw new TypeError(`Cannot read classifier "${o.classifier}": ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot read classifier "${o.classifier}": not JSON (${(e as Error).message})`);
  }
  const classifier = parseClassifier(json, o.classifier);
  const embeddings: Embeddings = await readEmbeddings(o.embeddings);
  const mismatch = classifierIdentityMismatch(classifier, embeddings.identity);
  if (mismatch) {
    throw new TypeError(
      `Cannot apply classifier "${o.classifier}" to "${o.embeddings}": the embeddings come from another model (${mismatch})`,
    );
  }
  const heads = o.label.length > 0
    ? o.label.map((l) => {
      const h = classifier.heads.find((x) => x.label === l);
      if (!h) {
        throw new TypeError(
          `Cannot use --label "${l}": classifier "${o.classifier}" has heads ${
            classifier.heads.map((x) => `"${x.label}"`).join(", ")
          }`,
        );
      }
      return h;
    })
    : classifier.heads;
  let join: Join | undefined;
  let labels: LabelTable | undefined;
  if (o.labels) {
    ({ join, labels } = await loadJoined(o, log));
  }
  const rowsToScore = join ? join.pairs.map((p) => p.row) : embeddings.paths.map((_, i) => i);
  const rowsData = rowsToScore.map((r) => embeddings.data.subarray(r * embeddings.d, (r + 1) * embeddings.d));
  const results = applyClassifier({ ...classifier, heads }, rowsData);
  const outcomes: LabelOutcome[] = [];
  const predictionRows: PredictionRow[] = [];
  results.forEach((res, h) => {
    const head = heads[h];
    const truth: (string | undefined)[] = rowsToScore.map(() => undefined);
    if (join && labels && labels.columns.includes(head.label)) {
      join.pairs.forEach((p, i) => {
        const v = labels!.rows[p.label].values[head.label];
        truth[i] = v === "" ? undefined : v;
      });
      const unknown = [
        ...new Set(truth.filter((v): v is string => v !== undefined && !head.classes.includes(v))),
      ];
      if (unknown.length > 0) {
        throw new TypeError(
          `Cannot score column "${head.label}" of "${o.labels}": labels ${
            unknown.map((v) => `"${v}"`).join(", ")
          } are not classes of the classifier (${head.classes.join(", ")})`,
        );
      }
      const scored = truth.map((v, i) => (v === undefined ? -1 : i)).filter((i) => i >= 0);
      if (scored.length > 0) {
        const report = classificationReport(
          scored.map((i) => head.classes.indexOf(truth[i]!)),
          scored.map((i) => res.probabilities[i]),
        );
        outcomes.push({
          label: head.label,
          classes: head.classes,
          rows: {
            joined: rowsToScore.length,
            labelled: scored.length,
            unlabelled: rowsToScore.length - scored.length,
          },
          evaluation: `classifier "${o.classifier}" applied`,
          report,
          folds: [{ train: 0, test: scored.length, metrics: report.metrics, fit_ms: 0 }],
        });
      }
    } else if (o.labels) {
      log(`warning: "${o.labels}" has no column "${head.label}": its predictions are not scored`);
    }
    rowsToScore.forEach((r, i) => {
      predictionRows.push({
        path: join && labels ? labels.rows[join.pairs[i].label].path : embeddings.paths[r],
        column: head.label,
        label: truth[i] ?? "",
        predicted: res.predicted[i],
        probabilities: new Map(head.classes.map((c, k) => [c, res.probabilities[i][k]])),
      });
    });
  });
  if (o.predictions) {
    const classes = [...new Set(heads.flatMap((h) => h.classes))];
    await writeAtomically(
      o.predictions,
      new TextEncoder().encode(predictionsCsv(predictionRows, classes, heads.length > 1)),
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  const model = { kind: "classifier", file: o.classifier, ...classifier.training };
  if (o.json) {
    const objects = outcomes.map((x) => outcomeJson(x, model));
    const out = objects.length === 1 ? objects[0] : {
      labels: objects,
      metrics: objects.length > 0 ? averageMetrics(outcomes.map((x) => x.report.metrics)).mean : null,
    };
    console.log(JSON.stringify({ ...out, rows_scored: rowsToScore.length, seconds }, null, 2));
  } else {
    console.log(
      `applied "${o.classifier}" (${
        heads.map((h) => h.label).join(", ")
      }) to ${rowsToScore.length} embeddings`,
    );
    for (const x of outcomes) {
      console.log(`\n${outcomeText(x, `classifier "${o.classifier}"`, o.curveMetric)}`);
    }
    console.log(`\n${seconds.toFixed(2)} s`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
