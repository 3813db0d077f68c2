import assert from "node:assert/strict";
import {
  averageMetrics,
  columnSplit,
  evaluate,
  fitModel,
  kFoldPlan,
  Matrix,
  type ModelSpec,
  shotsCurve,
} from "./probe_eval.ts";
import type { LabelTask } from "./probe_data.ts";
import { seededRng } from "./probe_split.ts";

const LOGREG: ModelSpec = { kind: "logreg", C: 1, standardize: false, tol: 1e-8, maxIterations: 10_000 };

/** n rows in D = 6: three classes around separate centres, noise 0.8; a patient per 3 rows. */
function synthetic(n = 90) {
  const rng = seededRng(2);
  const d = 6;
  const data = new Float32Array(n * d);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = Math.floor(i / 3) % 3; // a patient's 3 rows share a class
    for (let j = 0; j < d; j++) data[i * d + j] = (j === y[i] ? 2 : 0) + 0.8 * (rng() * 2 - 1) * 1.7;
  }
  const task: LabelTask = {
    column: "dx",
    classes: ["a", "b", "c"],
    rows: Array.from({ length: n }, (_, i) => i),
    labelRows: Array.from({ length: n }, (_, i) => i),
    y,
    unlabelled: 0,
  };
  const patients = Array.from({ length: n }, (_, i) => `p${Math.floor(i / 3)}`);
  return { m: new Matrix(data, d), task, patients };
}

Deno.test("evaluate() scores every row exactly once out of fold and pools the folds' predictions", () => {
  const { m, task } = synthetic();
  const plan = kFoldPlan(task, 5, 0);
  const r = evaluate(m, task, plan, LOGREG);
  assert.equal(r.folds.length, 5);
  assert.deepEqual(r.predictions.map((p) => p.position), task.rows.map((_, i) => i));
  assert.equal(r.pooled.rows, 90);
  assert.equal(r.folds.reduce((a, f) => a + f.test, 0), 90);
  assert.ok(r.pooled.metrics.accuracy > 0.8, `accuracy ${r.pooled.metrics.accuracy}`);
  assert.ok(r.folds.every((f) => f.solver?.converged));
});

Deno.test("kFoldPlan() with groups never puts a patient on both sides of a fold", () => {
  const { task, patients } = synthetic();
  for (const seed of [0, 1, 2, 3]) {
    const plan = kFoldPlan(task, 5, seed, patients);
    for (const { train, test } of plan.folds) {
      const inTest = new Set(test.map((i) => patients[i]));
      assert.ok(train.every((i) => !inTest.has(patients[i])), `seed ${seed}`);
    }
    assert.match(plan.description, /stratified group 5-fold/);
  }
  // Without groups, the same rows do end up split across sides (which is why the option exists).
  const plain = kFoldPlan(task, 5, 0);
  const split = plain.folds.some(({ train, test }) => {
    const inTest = new Set(test.map((i) => patients[i]));
    return train.some((i) => inTest.has(patients[i]));
  });
  assert.ok(split);
});

Deno.test("columnSplit() fits train rows, scores test rows, ignores the rest, and refuses a test class unseen in training", () => {
  const { task } = synthetic(12);
  const split = [
    "train",
    "train",
    "test",
    "validation",
    "train",
    "train",
    "train",
    "train",
    "test",
    "train",
    "train",
    "test",
  ];
  const plan = columnSplit(task, split, "split");
  assert.deepEqual(plan.folds[0].test, [2, 8, 11]);
  assert.equal(plan.ignored, 1);
  // rows 6..8 are the only class-2 rows of the first 9; make them test-only
  const onlyTest = split.map((v, i) => (task.y[i] === 2 ? "test" : v === "test" ? "train" : v));
  assert.throws(
    () => columnSplit(task, onlyTest, "split"),
    /Cannot train the split on column "dx": no training row of class "c" \(\d+ rows\); the test rows hold a label the training rows never show/,
  );
  assert.throws(
    () => columnSplit(task, split.map(() => "train"), "split"),
    /expected rows "train" and rows "test", got 12 train and 0 test/,
  );
});

Deno.test("kFoldPlan() refuses folds that would leave a class out of a fold's training rows", () => {
  const { task } = synthetic(90);
  const y = Int32Array.from(task.y);
  y[0] = 2;
  const rare: LabelTask = { ...task, classes: ["a", "b", "c", "d"], y: y.map((v, i) => (i === 5 ? 3 : v)) };
  assert.throws(() => kFoldPlan(rare, 5, 0), /no training row of class "d" \(1 rows\); use fewer --folds/);
});

Deno.test("shotsCurve() trains on that many rows per class per seed and improves with more rows", () => {
  const { m, task } = synthetic(150);
  const plan = kFoldPlan(task, 3, 0);
  const curve = shotsCurve(m, task, plan, LOGREG, { shots: [1, 5, 1000, "all"], seeds: 4, seed: 0 });
  assert.deepEqual(curve.map((p) => p.runs), [4, 4, 4, 1]);
  assert.ok(Math.abs(curve[0].rows_per_class - 1) < 1e-9);
  assert.ok(Math.abs(curve[1].rows_per_class - 5) < 1e-9);
  // 1000 per class caps at what each class has: every training row, as "all"
  assert.ok(Math.abs(curve[2].rows_per_class - curve[3].rows_per_class) < 1e-9);
  assert.ok(Math.abs(curve[3].rows_per_class - 100 / 3) < 1e-9); // 100 training rows per fold, 3 classes
  assert.ok(Math.abs(curve[2].mean.accuracy! - curve[3].mean.accuracy!) < 1e-12);
  assert.equal(curve[3].std.accuracy, 0);
  assert.ok(
    curve[0].mean.accuracy! < curve[3].mean.accuracy!,
    JSON.stringify(curve.map((p) => p.mean.accuracy)),
  );
  assert.ok(curve[0].std.accuracy! > 0); // different draws give different models
  // The same seed repeats the curve.
  const again = shotsCurve(m, task, plan, LOGREG, { shots: [1, 5, 1000, "all"], seeds: 4, seed: 0 });
  assert.deepEqual(again, curve);
});

Deno.test("fitModel() with knn and a fixed k votes among that many neighbours; with no k it chooses one", () => {
  const { m, task } = synthetic();
  const rows = task.rows.slice(0, 60);
  const y = Array.from(task.y.slice(0, 60));
  const fixed = fitModel(m, rows, y, task.classes, { kind: "knn", k: 7, seed: 0 });
  assert.equal(fixed.k, 7);
  const out = fixed.predict([70, 80]);
  for (const p of out.probabilities) {
    assert.ok(p.every((v) => Math.abs(v * 7 - Math.round(v * 7)) < 1e-9), `${p}`);
  }
  const chosen = fitModel(m, rows, y, task.classes, { kind: "knn", k: undefined, seed: 0 });
  assert.ok([1, 5, 10, 20, 30].includes(chosen.k!));
  assert.ok(chosen.kScores!.length > 0);
});

Deno.test("averageMetrics() skips undefined values and gives n - 1 standard deviations", () => {
  const { mean, std } = averageMetrics([
    { accuracy: 0.5, balanced_accuracy: 0.5, macro_f1: 0.4, roc_auc: null },
    { accuracy: 0.7, balanced_accuracy: 0.5, macro_f1: 0.6, roc_auc: 0.8 },
  ]);
  assert.ok(Math.abs(mean.accuracy! - 0.6) < 1e-15);
  assert.ok(Math.abs(std.accuracy! - Math.sqrt(0.02)) < 1e-15);
  assert.equal(mean.roc_auc, 0.8);
  assert.equal(std.roc_auc, 0);
  assert.equal(
    averageMetrics([{ accuracy: 1, balanced_accuracy: 1, macro_f1: 1, roc_auc: null }]).mean.roc_auc,
    null,
  );
});
