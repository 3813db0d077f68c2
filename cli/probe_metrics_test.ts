import assert from "node:assert/strict";
import { classificationReport, rocAuc } from "./probe_metrics.ts";
import { readTestdataJson, readTestdataText } from "../tests/_testdata.ts";
import { parseCsv } from "./inputs.ts";

const close = (a: number | null, b: number, tol = 1e-12) =>
  assert.ok(a !== null && Math.abs(a - b) <= tol, `${a} vs ${b}`);

Deno.test("rocAuc() counts tied scores as half, as the trapezoidal ROC area does", () => {
  // positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4: 1/2) (0.4>0.1) = 3.5 / 4
  close(rocAuc([0.8, 0.4, 0.4, 0.1], [true, true, false, false]), 0.875);
  // all scores tied: 0.5
  close(rocAuc([0.3, 0.3, 0.3], [true, false, false]), 0.5);
  close(rocAuc([1, 2, 3, 4], [false, false, true, true]), 1);
  close(rocAuc([1, 2, 3, 4], [true, true, false, false]), 0);
});

Deno.test("rocAuc() is null without a positive or without a negative row", () => {
  assert.equal(rocAuc([0.1, 0.2], [true, true]), null);
  assert.equal(rocAuc([0.1, 0.2], [false, false]), null);
});

Deno.test("classificationReport() computes every metric of a hand-worked binary case", () => {
  // truth:     0 0 0 1 1
  // predicted: 0 1 0 1 0   (p1 = 0.2 0.7 0.4 0.9 0.3)
  const p = [0.2, 0.7, 0.4, 0.9, 0.3].map((p1) => [1 - p1, p1]);
  const r = classificationReport([0, 0, 0, 1, 1], p);
  assert.deepEqual(r.confusion, [[2, 1], [1, 1]]);
  close(r.metrics.accuracy, 3 / 5);
  close(r.metrics.balanced_accuracy, (2 / 3 + 1 / 2) / 2);
  const f0 = 2 * (2 / 3) * (2 / 3) / (4 / 3);
  const f1 = 2 * 0.5 * 0.5 / 1;
  close(r.metrics.macro_f1, (f0 + f1) / 2);
  // positives 0.9, 0.3 vs negatives 0.2, 0.7, 0.4: 0.9 beats 3, 0.3 beats 1 -> 4/6
  close(r.metrics.roc_auc, 4 / 6);
  close(r.perClass[0].precision, 2 / 3);
  close(r.perClass[1].recall, 1 / 2);
  assert.equal(r.perClass[1].support, 2);
});

Deno.test("classificationReport() averages one-vs-rest AUCs over three classes", () => {
  const p = [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.4, 0.4, 0.2]];
  const truth = [0, 1, 2, 1];
  const r = classificationReport(truth, p);
  const expected = [0, 1, 2].map((k) => rocAuc(p.map((q) => q[k]), truth.map((t) => t === k))!);
  close(r.metrics.roc_auc, expected.reduce((a, b) => a + b) / 3);
  // Row 3 ties classes 0 and 1 at 0.4: predicted as the first, class 0.
  assert.deepEqual(r.confusion, [[1, 0, 0], [1, 1, 0], [0, 0, 1]]);
});

Deno.test("classificationReport() leaves out of macro F1 a class neither true nor predicted, and of balanced accuracy one never true", () => {
  // Three classes; class 2 never appears; class 1 is predicted but never true.
  const p = [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1]];
  const r = classificationReport([0, 0, 0], p);
  close(r.metrics.accuracy, 2 / 3);
  close(r.metrics.balanced_accuracy, 2 / 3); // only class 0 counts
  // class 0: P 1, R 2/3, F1 0.8; class 1: P 0, R 0, F1 0; class 2 ignored
  close(r.metrics.macro_f1, 0.4);
  assert.equal(r.metrics.roc_auc, null); // classes without true rows: undefined, as scikit-learn raises
  assert.equal(r.perClass[1].precision, 0);
});

Deno.test("classificationReport() uses given predictions rather than the most probable class", () => {
  const r = classificationReport([0, 1], [[0.6, 0.4], [0.6, 0.4]], [1, 1]);
  close(r.metrics.accuracy, 0.5);
  assert.deepEqual(r.confusion, [[0, 1], [0, 1]]);
});

Deno.test("classificationReport() refuses no rows and mismatched lengths", () => {
  assert.throws(() => classificationReport([], []), TypeError);
  assert.throws(() => classificationReport([0, 1], [[1, 0]]), TypeError);
});

Deno.test("classificationReport() gives scikit-learn's metrics from scikit-learn's own probabilities on testdata/probe", () => {
  const expected = readTestdataJson<Record<string, any>>("probe/expected_sklearn.json");
  const table = parseCsv(readTestdataText("probe/labels.csv"));
  const header = table[0];
  const byFile = new Map(table.slice(1).map((r) => [r[0], r]));
  for (const column of ["benign_malignant", "age_group"]) {
    const e = expected[column];
    const at = header.indexOf(column);
    const truth = e.logreg_C1.test_paths.map((p: string) => e.classes.indexOf(byFile.get(p)![at]));
    const r = classificationReport(truth, e.logreg_C1.prob);
    for (const name of ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc"] as const) {
      close(r.metrics[name], e.logreg_C1.metrics[name], 1e-12);
    }
  }
});
