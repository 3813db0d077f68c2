import assert from "node:assert/strict";
import { csvField, type LabelOutcome, outcomeJson, outcomeText, predictionsCsv } from "./probe_report.ts";
import { classificationReport } from "./probe_metrics.ts";
import { parseCsv } from "./inputs.ts";

Deno.test("csvField() quotes fields with commas, quotes and line breaks", () => {
  assert.equal(csvField("a.png"), "a.png");
  assert.equal(csvField("a,b.png"), '"a,b.png"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField("two\nlines"), '"two\nlines"');
});

Deno.test("predictionsCsv() writes path, label, predicted, prob_<class>, and column and fold when there are several", () => {
  const one = predictionsCsv(
    [{ path: "x,1.png", label: "b", predicted: "a", probabilities: new Map([["a", 0.75], ["b", 0.25]]) }],
    ["a", "b"],
    false,
  );
  assert.deepEqual(parseCsv(one).slice(0, 2), [["path", "label", "predicted", "prob_a", "prob_b"], [
    "x,1.png",
    "b",
    "a",
    "0.75",
    "0.25",
  ]]);
  const multi = predictionsCsv(
    [
      {
        path: "p",
        column: "dx",
        label: "a",
        predicted: "a",
        probabilities: new Map([["a", 1], ["b", 0]]),
        fold: 2,
      },
      {
        path: "p",
        column: "age",
        label: "",
        predicted: "old",
        probabilities: new Map([["old", 0.6], ["young", 0.4]]),
        fold: 1,
      },
    ],
    ["a", "b", "old", "young"],
    true,
  );
  assert.deepEqual(parseCsv(multi).slice(0, 3), [
    ["path", "column", "label", "predicted", "prob_a", "prob_b", "prob_old", "prob_young", "fold"],
    ["p", "dx", "a", "a", "1", "0", "", "", "2"],
    ["p", "age", "", "old", "", "", "0.6", "0.4", "1"],
  ]);
});

function outcome(): LabelOutcome {
  const report = classificationReport([0, 0, 1, 1], [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]]);
  return {
    label: "dx",
    classes: ["benign", "malignant"],
    rows: { joined: 5, labelled: 4, unlabelled: 1 },
    evaluation: 'split column "split"',
    report,
    folds: [{
      train: 10,
      test: 4,
      metrics: report.metrics,
      fit_ms: 12,
      solver: { iterations: 30, evaluations: 33, gradMax: 5e-9, converged: true },
    }],
  };
}

Deno.test("outcomeJson() has the classes, the four metrics, per-class figures, the confusion matrix and the folds", () => {
  const json = outcomeJson(outcome(), { kind: "logreg", C: 1 });
  assert.deepEqual(json.classes, ["benign", "malignant"]);
  assert.deepEqual(Object.keys(json.metrics as object), [
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "roc_auc",
  ]);
  assert.deepEqual(json.confusion, [[1, 1], [0, 2]]);
  assert.deepEqual(Object.keys(json.per_class as object), ["benign", "malignant"]);
  assert.equal((json.folds as unknown[]).length, 1);
  assert.equal(json.shots, undefined);
});

Deno.test("outcomeText() prints the metrics, the per-class table, the confusion matrix and the solver", () => {
  const text = outcomeText(outcome(), "logreg C=1", "macro_f1");
  assert.match(text, /^== dx: 2 classes \(benign, malignant\); logreg C=1; split column "split"/);
  assert.match(text, /rows: 5 joined, 4 labelled, 1 unlabelled/);
  assert.match(text, /accuracy 0.7500 {2}balanced accuracy 0.7500 {2}macro F1 0.7333 {2}ROC AUC 1.0000/);
  assert.match(text, /malignant +0.6667 +1.0000 +0.8000 +2/);
  assert.match(text, /benign +1 +1\nmalignant +0 +2/);
  assert.match(text, /solver: L-BFGS, 30 iterations per fit, largest final gradient 5.0e-9, 0.01 s fitting/);
});
