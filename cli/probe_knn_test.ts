import assert from "node:assert/strict";
import { chooseK, cosineNeighbours, knnVote, rowNorms } from "./probe_knn.ts";
import { fixtureSplit, probeFixture } from "../tests/_probe_fixture.ts";
import { seededRng } from "./probe_split.ts";

Deno.test("cosineNeighbours() and knnVote() with k = 5 predict what scikit-learn predicts on testdata/probe", () => {
  const f = probeFixture();
  const norms = rowNorms(f.data, f.d);
  for (const column of ["benign_malignant", "age_group"] as const) {
    const { train, y, test, expected } = fixtureSplit(f, column);
    const nb = cosineNeighbours(f.data, f.d, norms, test, train, 5);
    const predicted = nb.map((list) =>
      expected.classes[knnVote(Array.from(list, (p) => y[p]), 5, expected.classes.length).predicted]
    );
    assert.deepEqual(predicted, expected.knn_cosine_k5.predicted, column);
  }
});

Deno.test("cosineNeighbours() orders by cosine, not by length, takes equal distances in candidate order, and puts a zero vector at distance 1", () => {
  // D = 2. Query (1, 0). Candidates: (10, 1) cos 0.995; (0, 1) cos 0; (2, 0) cos 1; (1, 0) cos 1; (0, 0) cos 0 by rule; (-1, 0) cos -1.
  const data = Float32Array.of(1, 0, 10, 1, 0, 1, 2, 0, 1, 0, 0, 0, -1, 0);
  const norms = rowNorms(data, 2);
  const [list] = cosineNeighbours(data, 2, norms, [0], [1, 2, 3, 4, 5, 6], 6);
  // positions in the candidate list: (2,0)=2, (1,0)=3, (10,1)=0, (0,1)=1, (0,0)=4, (-1,0)=5
  assert.deepEqual(Array.from(list), [2, 3, 0, 1, 4, 5]);
});

Deno.test("cosineNeighbours() returns every candidate when there are fewer than k", () => {
  const data = Float32Array.of(1, 0, 0, 1, 1, 1);
  const [list] = cosineNeighbours(data, 2, rowNorms(data, 2), [2], [0, 1], 5);
  assert.equal(list.length, 2);
});

Deno.test("knnVote() gives vote shares and sends a tie to the class that sorts first", () => {
  const v = knnVote([2, 1, 2, 1, 0], 4, 3); // the first 4: two of class 2, two of class 1
  assert.deepEqual(Array.from(v.probabilities), [0, 0.5, 0.5]);
  assert.equal(v.predicted, 1);
  assert.equal(knnVote([2, 1, 0], 3, 3).predicted, 0);
  assert.equal(knnVote([2, 2, 0], 3, 3).predicted, 2);
});

Deno.test("chooseK() picks a large k when labels are noisy around two clusters and k = 1 when a class has one row", () => {
  // Two clusters in D = 8 with 30 % of labels flipped: a single neighbour copies the noise, many average it out.
  const rng = seededRng(3);
  const n = 200, d = 8;
  const data = new Float32Array(n * d);
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    for (let j = 0; j < d; j++) data[i * d + j] = (j === c ? 3 : 0) + rng();
    y.push(rng() < 0.3 ? 1 - c : c);
  }
  const rows = Array.from({ length: n }, (_, i) => i);
  const norms = rowNorms(data, d);
  const choice = chooseK({ data, d, rows }, norms, y, 2, { seed: 1 });
  assert.ok(choice.k >= 10, `k ${choice.k}: ${JSON.stringify(choice.scores)}`);
  assert.deepEqual(choice.scores.map((s) => s.k), [1, 5, 10, 20, 30, 50, 100]); // 200 > the inner training size
  const best = Math.max(...choice.scores.map((s) => s.macro_f1));
  assert.equal(choice.scores.find((s) => s.k === choice.k)!.macro_f1, best);
  const one = chooseK({ data, d, rows: [0, 1, 2] }, norms, [0, 1, 1], 2);
  assert.deepEqual(one, { k: 1, scores: [] });
});
