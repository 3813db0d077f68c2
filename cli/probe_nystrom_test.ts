import assert from "node:assert/strict";
import { nystromScatter, orthonormalizeRows, symmetricEigen } from "./probe_nystrom.ts";
import { randomFloats } from "../tests/_random.ts";

Deno.test("symmetricEigen() decomposes a symmetric matrix into descending eigenvalues and orthonormal eigenvectors", () => {
  const r = 5;
  const b = randomFloats(r * r, 4);
  const a = new Float64Array(r * r); // a = b b^T
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < r; j++) for (let k = 0; k < r; k++) a[i * r + j] += b[i * r + k] * b[j * r + k];
  }
  const { values, vectors } = symmetricEigen(a.slice(), r);
  for (let e = 1; e < r; e++) assert.ok(values[e - 1] >= values[e]);
  for (let e = 0; e < r; e++) {
    // a v = lambda v
    for (let i = 0; i < r; i++) {
      let av = 0;
      for (let j = 0; j < r; j++) av += a[i * r + j] * vectors[e * r + j];
      assert.ok(Math.abs(av - values[e] * vectors[e * r + i]) < 1e-10, `eigenpair ${e}`);
    }
    for (let f = 0; f < r; f++) {
      let dot = 0;
      for (let j = 0; j < r; j++) dot += vectors[e * r + j] * vectors[f * r + j];
      assert.ok(Math.abs(dot - (e === f ? 1 : 0)) < 1e-12);
    }
  }
});

Deno.test("orthonormalizeRows() makes the rows orthonormal and spanning the same space", () => {
  const r = 4, d = 9;
  const m = randomFloats(r * d, 8);
  const original = m.slice();
  orthonormalizeRows(m, r, d);
  for (let a = 0; a < r; a++) {
    for (let b = 0; b < r; b++) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += m[a * d + j] * m[b * d + j];
      assert.ok(Math.abs(dot - (a === b ? 1 : 0)) < 1e-13);
    }
  }
  // the last original row is reproduced from the orthonormal basis
  const last = original.subarray(3 * d, 4 * d);
  const rebuilt = new Float64Array(d);
  for (let a = 0; a < r; a++) {
    let c = 0;
    for (let j = 0; j < d; j++) c += last[j] * m[a * d + j];
    for (let j = 0; j < d; j++) rebuilt[j] += c * m[a * d + j];
  }
  for (let j = 0; j < d; j++) assert.ok(Math.abs(rebuilt[j] - last[j]) < 1e-12);
});

Deno.test("nystromScatter() recovers a scatter matrix of rank below r exactly, centred and scaled", () => {
  // Rows = mean + 3 latent factors in D = 12, so the centred scatter has rank 3.
  const n = 40, d = 12, L = 3;
  const loads = randomFloats(L * d, 1);
  const factors = randomFloats(n * L, 2);
  const data = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      let v = 5 + j;
      for (let l = 0; l < L; l++) v += factors[i * L + l] * loads[l * d + j];
      data[i * d + j] = v;
    }
  }
  const rows = Array.from({ length: n }, (_, i) => i);
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += data[i * d + j] / n;
  const invScale = Float64Array.from({ length: d }, (_, j) => 1 / (1 + j / 4));
  const approx = nystromScatter({ data, d, rows }, mean, invScale, 6, 0);
  // A = S (X - mean)^T (X - mean) S, computed directly.
  const a = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < d; p++) {
      for (let q = 0; q < d; q++) {
        a[p * d + q] += (data[i * d + p] - mean[p]) * invScale[p] * (data[i * d + q] - mean[q]) * invScale[q];
      }
    }
  }
  let maxA = 0, maxErr = 0;
  for (let p = 0; p < d; p++) {
    for (let q = 0; q < d; q++) {
      let v = 0;
      for (let e = 0; e < approx.rank; e++) {
        v += approx.values[e] * approx.vectors[e * d + p] * approx.vectors[e * d + q];
      }
      maxA = Math.max(maxA, Math.abs(a[p * d + q]));
      maxErr = Math.max(maxErr, Math.abs(v - a[p * d + q]));
    }
  }
  assert.ok(maxErr <= 1e-9 * maxA, `max error ${maxErr} of ${maxA}`);
  assert.equal(approx.values.filter((v) => v > 1e-6 * approx.values[0]).length, 3);
});
