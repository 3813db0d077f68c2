import assert from "node:assert/strict";
import { jacobiEigen, pca2 } from "./pca.ts";

/** Rows with known principal components: s1 u1 + s2 u2 + s3 u3 + mean, u orthonormal, s zero-mean, orthogonal. */
function knownRows(
  n: number,
  d: number,
): { rows: Float64Array[]; s1: number[]; s2: number[]; shares: number[] } {
  // Orthonormal u1, u2, u3 in R^d: normalised +-1 patterns of a Hadamard-like (Walsh) basis.
  const walsh = (k: number) =>
    Float64Array.from({ length: d }, (_, j) => ((popcount(j & k) % 2) ? -1 : 1) / Math.sqrt(d));
  const u = [walsh(1), walsh(2), walsh(3)];
  // Zero-mean, mutually orthogonal score vectors with variances 9 : 4 : 1 (Walsh patterns over rows).
  const rowPattern = (k: number, scale: number) =>
    Array.from({ length: n }, (_, i) => ((popcount(i & k) % 2) ? -1 : 1) * scale);
  const s1 = rowPattern(1, 3), s2 = rowPattern(2, 2), s3 = rowPattern(4, 1);
  const mean = Float64Array.from({ length: d }, (_, j) => 0.25 * j - 1);
  const rows = Array.from(
    { length: n },
    (_, i) =>
      Float64Array.from(
        { length: d },
        (_, j) => mean[j] + s1[i] * u[0][j] + s2[i] * u[1][j] + s3[i] * u[2][j],
      ),
  );
  const total = 9 + 4 + 1;
  return { rows, s1, s2, shares: [9 / total, 4 / total] };
}

function popcount(v: number): number {
  let c = 0;
  for (; v; v &= v - 1) c++;
  return c;
}

function assertScores(got: Float64Array, want: number[], what: string) {
  // Up to sign; pca2 makes the largest-magnitude score positive.
  const sign = Math.sign(got[want.findIndex((w) => Math.abs(w) === Math.max(...want.map(Math.abs)))] || 1);
  const err = Math.max(...want.map((w, i) => Math.abs(got[i] - sign * w)));
  assert.ok(err < 1e-9, `${what}: max error ${err} (got ${Array.from(got.slice(0, 4))}...)`);
}

for (const [n, d] of [[8, 16], [16, 8], [8, 8]]) {
  Deno.test(`pca2() recovers known components and shares when N = ${n}, D = ${d}`, () => {
    const { rows, s1, s2, shares } = knownRows(n, d);
    const p = pca2(rows);
    assertScores(p.x, s1, "PC1");
    assertScores(p.y, s2, "PC2");
    assert.ok(Math.abs(p.explained[0] - shares[0]) < 1e-12, `share 1 ${p.explained[0]}`);
    assert.ok(Math.abs(p.explained[1] - shares[1]) < 1e-12, `share 2 ${p.explained[1]}`);
  });
}

Deno.test("pca2() fixes each component's sign so its largest score is positive", () => {
  const rows = [[0, 0], [1, 0.1], [-3, 0.2], [2, -0.3]];
  const p = pca2(rows);
  const top = (v: Float64Array) => v.reduce((b, x) => (Math.abs(x) > Math.abs(b) ? x : b), 0);
  assert.ok(top(p.x) > 0 && top(p.y) > 0);
  // The same rows negated give the same picture.
  const q = pca2(rows.map((r) => r.map((v) => -v)));
  assert.deepEqual(Array.from(q.x, (v) => v.toFixed(12)), Array.from(p.x, (v) => v.toFixed(12)));
});

Deno.test("pca2() gives zeros for identical rows and one component for collinear ones", () => {
  const same = pca2([[1, 2, 3], [1, 2, 3], [1, 2, 3]]);
  assert.deepEqual([...same.x, ...same.y], [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(same.explained, [0, 0]);
  const line = pca2([[0, 0, 0], [1, 2, 2], [2, 4, 4], [-1, -2, -2]]);
  assert.ok(Math.abs(line.explained[0] - 1) < 1e-12);
  assert.ok(Math.max(...line.y.map(Math.abs)) < 1e-9);
  // |score| = distance along the line from the mean (0.5, 1, 1): 3 per step.
  assert.ok(Math.abs(Math.max(...line.x) - 4.5) < 1e-9);
});

Deno.test("pca2() refuses fewer than 2 rows and ragged rows", () => {
  assert.throws(() => pca2([[1, 2]]), RangeError);
  assert.throws(() => pca2([[1, 2], [1]]), RangeError);
});

Deno.test("jacobiEigen() decomposes a symmetric 3x3 matrix with known eigenvalues", () => {
  // [[2,1,0],[1,2,0],[0,0,5]]: eigenvalues 5, 3, 1.
  const { values, vectors } = jacobiEigen(Float64Array.of(2, 1, 0, 1, 2, 0, 0, 0, 5), 3);
  assert.deepEqual(Array.from(values, (v) => Number(v.toFixed(12))), [5, 3, 1]);
  // Column 1 is +-(1, 1, 0) / sqrt 2.
  assert.ok(Math.abs(Math.abs(vectors[0 * 3 + 1]) - Math.SQRT1_2) < 1e-12);
  assert.ok(Math.abs(vectors[2 * 3 + 1]) < 1e-12);
});
