import assert from "node:assert/strict";
import { featureMeans, fitLogisticRegression, standardization } from "./probe_logreg.ts";
import { linearProbabilities } from "../models/classifier.ts";
import { classificationReport } from "./probe_metrics.ts";
import { fixtureSplit, probeFixture } from "../tests/_probe_fixture.ts";
import { seededRng } from "./probe_split.ts";

/**
 * scikit-learn's objective C * sum logloss + 1/2 ||W||^2 and the largest component of its gradient,
 * written plainly and independently of the solver (weights: rows of D; intercepts unpenalised).
 */
function objective(
  data: Float32Array,
  d: number,
  rows: number[],
  y: number[],
  w: number[][],
  b: number[],
  C: number,
) {
  const R = b.length;
  let loss = 0;
  const gw = w.map(() => new Float64Array(d));
  const gb = new Float64Array(R);
  rows.forEach((row, i) => {
    const z = b.map((bk, k) => {
      let s = bk;
      for (let j = 0; j < d; j++) s += w[k][j] * data[row * d + j];
      return s;
    });
    let r: number[];
    if (R === 1) {
      const p = 1 / (1 + Math.exp(-z[0]));
      loss += -(y[i] === 1 ? Math.log(p) : Math.log(1 - p));
      r = [p - y[i]];
    } else {
      const m = Math.max(...z);
      const e = z.map((v) => Math.exp(v - m));
      const sum = e.reduce((a, v) => a + v);
      loss += -Math.log(e[y[i]] / sum);
      r = e.map((v, k) => v / sum - (k === y[i] ? 1 : 0));
    }
    for (let k = 0; k < R; k++) {
      gb[k] += C * r[k];
      for (let j = 0; j < d; j++) gw[k][j] += C * r[k] * data[row * d + j];
    }
  });
  let penalty = 0, gmax = 0;
  for (let k = 0; k < R; k++) {
    for (let j = 0; j < d; j++) {
      penalty += w[k][j] ** 2;
      gmax = Math.max(gmax, Math.abs(gw[k][j] + w[k][j]));
    }
    gmax = Math.max(gmax, Math.abs(gb[k]));
  }
  return { value: C * loss + 0.5 * penalty, gradMax: gmax };
}

function rowsOf(weights: Float64Array, r: number): number[][] {
  const d = weights.length / r;
  return Array.from({ length: r }, (_, k) => Array.from(weights.subarray(k * d, (k + 1) * d)));
}

for (const column of ["benign_malignant", "age_group"] as const) {
  Deno.test(`fitLogisticRegression() gives scikit-learn's probabilities, coefficients and metrics on testdata/probe "${column}"`, () => {
    const f = probeFixture();
    const { train, y, test, testY, expected } = fixtureSplit(f, column);
    const e = expected.logreg_C1;
    const fit = fitLogisticRegression({ data: f.data, d: f.d, rows: train }, y, expected.classes, { C: 1 });
    assert.ok(fit.converged);
    const R = e.intercept.length;
    assert.equal(fit.model.intercepts.length, R); // 1 row for two classes, 3 for three
    const probs = test.map((row) => linearProbabilities(fit.model, f.data, row * f.d));
    let maxProb = 0;
    probs.forEach((p, t) => p.forEach((v, k) => (maxProb = Math.max(maxProb, Math.abs(v - e.prob[t][k])))));
    let maxCoef = 0;
    rowsOf(fit.model.weights, R).forEach((row, k) =>
      row.forEach((v, j) => (maxCoef = Math.max(maxCoef, Math.abs(v - e.coef[k][j]))))
    );
    // The intercepts at the training mean, b + W.mean: the raw intercepts trade off against W.mean along a
    // direction where scikit-learn stopped early (see the objective test below), up to 0.07 here.
    const mean = featureMeans({ data: f.data, d: f.d, rows: train });
    let maxCentred = 0, maxRaw = 0;
    for (let k = 0; k < R; k++) {
      let ours = fit.model.intercepts[k], theirs = e.intercept[k];
      for (let j = 0; j < f.d; j++) {
        ours += fit.model.weights[k * f.d + j] * mean[j];
        theirs += e.coef[k][j] * mean[j];
      }
      maxCentred = Math.max(maxCentred, Math.abs(ours - theirs));
      maxRaw = Math.max(maxRaw, Math.abs(fit.model.intercepts[k] - e.intercept[k]));
    }
    console.log(
      `${column}: max |prob - sklearn| ${maxProb.toExponential(2)}, coef ${maxCoef.toExponential(2)}, ` +
        `intercept at the mean ${maxCentred.toExponential(2)}, raw intercept ${maxRaw.toExponential(2)}`,
    );
    assert.ok(maxProb <= 1e-3, `probabilities differ by ${maxProb}`);
    assert.ok(maxCoef <= 1e-3, `coefficients differ by ${maxCoef}`);
    assert.ok(maxCentred <= 1e-3, `intercepts at the mean differ by ${maxCentred}`);
    assert.ok(maxRaw <= 0.1, `raw intercepts differ by ${maxRaw}`);
    const metrics = classificationReport(testY, probs).metrics;
    for (const name of ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc"] as const) {
      assert.ok(
        Math.abs(metrics[name]! - e.metrics[name]) <= 1e-3,
        `${name}: ${metrics[name]} vs ${e.metrics[name]}`,
      );
    }
    if (R > 1) {
      assert.ok(
        Math.abs(fit.model.intercepts.reduce((a, b) => a + b)) < 1e-9,
        "multinomial intercepts sum to 0",
      );
    }
  });

  Deno.test(`fitLogisticRegression() reaches a lower objective and a 100 x smaller gradient than scikit-learn's solution for "${column}"`, () => {
    const f = probeFixture();
    const { train, y, expected } = fixtureSplit(f, column);
    const e = expected.logreg_C1;
    const fit = fitLogisticRegression({ data: f.data, d: f.d, rows: train }, y, expected.classes);
    const ours = objective(
      f.data,
      f.d,
      train,
      y,
      rowsOf(fit.model.weights, e.intercept.length),
      Array.from(fit.model.intercepts),
      1,
    );
    const theirs = objective(f.data, f.d, train, y, e.coef, e.intercept, 1);
    console.log(
      `${column}: objective ${ours.value} (ours) vs ${theirs.value} (scikit-learn); ` +
        `max |gradient| ${ours.gradMax.toExponential(2)} vs ${theirs.gradMax.toExponential(2)}`,
    );
    assert.ok(ours.value <= theirs.value);
    assert.ok(ours.gradMax <= theirs.gradMax / 100);
  });
}

/** A small random problem: n rows of D with K classes from a noisy linear rule. */
function randomProblem(n: number, d: number, K: number, seed: number) {
  const rng = seededRng(seed);
  const data = Float32Array.from({ length: n * d }, () => 2 * rng() - 0.5);
  const y = Array.from({ length: n }, (_, i) => {
    const z = Array.from({ length: K }, (_, k) => data[i * d + k] * 3 + rng());
    return z.indexOf(Math.max(...z));
  });
  return { data, y, rows: Array.from({ length: n }, (_, i) => i) };
}

Deno.test("fitLogisticRegression() meets the optimality conditions of the objective for C = 0.3, binary and 4 classes", () => {
  for (const K of [2, 4]) {
    const { data, y, rows } = randomProblem(60, 7, K, K);
    const classes = Array.from({ length: K }, (_, k) => `c${k}`);
    const C = 0.3;
    const fit = fitLogisticRegression({ data, d: 7, rows }, y, classes, { C, tol: 1e-10 });
    assert.ok(fit.converged);
    const R = K === 2 ? 1 : K;
    const o = objective(data, 7, rows, y, rowsOf(fit.model.weights, R), Array.from(fit.model.intercepts), C);
    // tol bounds the gradient of the objective / (C n) in the solver's centred parameters (w, b + w.mean),
    // whose weight components are the raw ones minus mean_j times the intercept's: here the raw gradient is
    // at most (1 + max |mean_j|) C n tol = 1.5 x 1.8e-9 (at the start it is about 9)
    const mean = featureMeans({ data, d: 7, rows });
    const bound = (1 + Math.max(...mean.map(Math.abs))) * C * 60 * 1e-10;
    assert.ok(o.gradMax <= bound, `K ${K}: gradient ${o.gradMax}, bound ${bound}`);
  }
});

Deno.test("fitLogisticRegression() with standardize fits the model of standardised copies of the rows", () => {
  const { data, y, rows } = randomProblem(50, 6, 3, 9);
  for (let i = 0; i < 50; i++) data[i * 6 + 2] = 7; // a constant feature: scale 1
  for (let i = 0; i < 50; i++) data[i * 6 + 4] *= 100;
  const classes = ["a", "b", "c"];
  const fit = fitLogisticRegression({ data, d: 6, rows }, y, classes, { standardize: true, tol: 1e-12 });
  const { mean, scale } = standardization({ data, d: 6, rows });
  assert.equal(scale[2], 1);
  assert.ok(Math.abs(mean[2] - 7) < 1e-12);
  const copy = Float32Array.from(data, (v, i) => (v - mean[i % 6]) / scale[i % 6]);
  const plain = fitLogisticRegression({ data: copy, d: 6, rows }, y, classes, { tol: 1e-12 });
  for (let i = 0; i < 50; i++) {
    const a = linearProbabilities(fit.model, data, i * 6);
    const b = linearProbabilities(plain.model, copy, i * 6);
    for (let k = 0; k < 3; k++) assert.ok(Math.abs(a[k] - b[k]) < 1e-6, `row ${i}`);
  }
  for (let j = 0; j < 18; j++) assert.ok(Math.abs(fit.model.weights[j] - plain.model.weights[j]) < 1e-5);
});

Deno.test("fitLogisticRegression() reaches the same solution with and without its preconditioner", () => {
  const f = probeFixture();
  const { train, y, test, expected } = fixtureSplit(f, "age_group");
  const x = { data: f.data, d: f.d, rows: train };
  const a = fitLogisticRegression(x, y, expected.classes, { tol: 1e-10, preconditionRank: 128 });
  const b = fitLogisticRegression(x, y, expected.classes, { tol: 1e-10, preconditionRank: 0 });
  console.log(`age_group: ${a.iterations} iterations preconditioned, ${b.iterations} without`);
  assert.ok(a.iterations < b.iterations);
  for (const row of test) {
    const pa = linearProbabilities(a.model, f.data, row * f.d);
    const pb = linearProbabilities(b.model, f.data, row * f.d);
    for (let k = 0; k < 3; k++) assert.ok(Math.abs(pa[k] - pb[k]) < 1e-6);
  }
});

Deno.test("fitLogisticRegression() refuses bad arguments", () => {
  const x = { data: Float32Array.of(1, 2, 3, 4), d: 2, rows: [0, 1] };
  assert.throws(() => fitLogisticRegression(x, [0, 1], ["a", "b"], { C: 0 }), RangeError);
  assert.throws(() => fitLogisticRegression(x, [0, 2], ["a", "b"]), /class indices 0 to 1, got 2/);
  assert.throws(() => fitLogisticRegression(x, [0], ["a", "b"]), /expected 2 labels, got 1/);
  assert.throws(() => fitLogisticRegression(x, [0, 0], ["a"]), /two or more classes/);
  assert.throws(() => fitLogisticRegression({ ...x, rows: [] }, [], ["a", "b"]), /training rows, got none/);
});
