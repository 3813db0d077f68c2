import assert from "node:assert/strict";
import {
  applyClassifier,
  argmax,
  type Classifier,
  classifierIdentityMismatch,
  headToLinearModel,
  linearModelToHead,
  linearProbabilities,
  parseClassifier,
} from "./classifier.ts";

function classifier(overrides: Partial<Classifier> = {}): Classifier {
  return {
    format: "derm-webgpu-classifier",
    version: 1,
    embedding: {
      model: "procedural:tiny-derm",
      architecture: "BiT tiny",
      preset: "derm",
      input_size: 96,
      embedding_size: 3,
    },
    training: { kind: "logreg", C: 1 },
    heads: [
      {
        label: "dx",
        classes: ["benign", "malignant"],
        weights: [[1, -2, 0.5]],
        intercepts: [0.25],
        standardization: null,
      },
      {
        label: "age",
        classes: ["a", "b", "c"],
        weights: [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        intercepts: [0, 0, Math.log(2)],
        standardization: { mean: [1, 1, 1], scale: [2, 2, 2] },
      },
    ],
    ...overrides,
  };
}

Deno.test("applyClassifier() gives sigmoid probabilities for two classes and softmax for more, standardising first", () => {
  const [dx, age] = applyClassifier(classifier(), [[1, 1, 2], [3, 1, 1]]);
  // dx row 0: z = 1 - 2 + 1 + 0.25 = 0.25
  const p = 1 / (1 + Math.exp(-0.25));
  assert.ok(
    Math.abs(dx.probabilities[0][1] - p) < 1e-15 && Math.abs(dx.probabilities[0][0] - (1 - p)) < 1e-15,
  );
  assert.equal(dx.predicted[0], "malignant");
  // age row 1: standardised (1, 0, 0); z = (1, 0, log 2) -> softmax e, 1, 2 over e + 3
  const s = Math.E + 3;
  const want = [Math.E / s, 1 / s, 2 / s];
  age.probabilities[1].forEach((v, k) => assert.ok(Math.abs(v - want[k]) < 1e-15));
  assert.equal(age.predicted[1], "a");
  assert.deepEqual(age.classes, ["a", "b", "c"]);
});

Deno.test("applyClassifier() refuses embeddings of another model, of the wrong size, or not finite", () => {
  const c = classifier();
  assert.throws(
    () => applyClassifier(c, [[1, 2, 3]], { identity: { ...c.embedding, preset: "bit" } }),
    (e) => e instanceof TypeError && /another model's \(preset: expected "derm", got "bit"\)/.test(e.message),
  );
  assert.throws(() => applyClassifier(c, [[1, 2]]), /embedding 0: expected 3 values, got 2/);
  assert.throws(() => applyClassifier(c, [[1, NaN, 3]]), /embedding 0: value 1 is NaN/);
  assert.equal(applyClassifier(c, [[1, 2, 3]], { identity: c.embedding }).length, 2);
});

Deno.test("classifierIdentityMismatch() checks every fact the classifier records, and only those", () => {
  const c = classifier();
  assert.equal(classifierIdentityMismatch(c, { ...c.embedding }), undefined);
  assert.equal(classifierIdentityMismatch(c, { ...c.embedding, input_size: "96" }), undefined); // as files state it
  assert.match(
    classifierIdentityMismatch(c, { ...c.embedding, embedding_size: 4 })!,
    /embedding_size: expected 3, got 4/,
  );
  assert.match(
    classifierIdentityMismatch(c, { embedding_size: 3 })!,
    /model: expected "procedural:tiny-derm", got not stated/,
  );
  const loose = classifier({
    embedding: { model: null, architecture: null, preset: null, input_size: null, embedding_size: 3 },
  });
  assert.equal(classifierIdentityMismatch(loose, { embedding_size: 3, preset: "bit" }), undefined);
  assert.match(classifierIdentityMismatch(loose, { embedding_size: 5 })!, /embedding_size/);
});

Deno.test("parseClassifier() accepts a valid file and names the first bad field of a broken one", () => {
  assert.equal(parseClassifier(JSON.parse(JSON.stringify(classifier()))).heads.length, 2);
  const broken = (change: (c: any) => void) => {
    const c = JSON.parse(JSON.stringify(classifier()));
    change(c);
    return () => parseClassifier(c, "c.json");
  };
  assert.throws(
    broken((c) => (c.format = "other")),
    /Cannot read classifier "c.json": expected format to be "derm-webgpu-classifier", got "other"/,
  );
  assert.throws(broken((c) => (c.version = 2)), /expected version to be 1, got 2/);
  assert.throws(
    broken((c) => delete c.embedding.embedding_size),
    /embedding.embedding_size to be a positive integer, got nothing/,
  );
  assert.throws(broken((c) => (c.heads = [])), /heads to be a non-empty array/);
  assert.throws(
    broken((c) => (c.heads[0].weights = [[1, 2, 3], [4, 5, 6]])),
    /heads\[0\].weights to be 1 rows for 2 classes/,
  );
  assert.throws(
    broken((c) => (c.heads[1].weights[2] = [1, 2])),
    /heads\[1\].weights\[2\] to be 3 finite numbers, got an array of 2/,
  );
  assert.throws(
    broken((c) => (c.heads[0].intercepts = ["x"])),
    /heads\[0\].intercepts to be 1 finite numbers/,
  );
  assert.throws(
    broken((c) => (c.heads[0].classes = ["a", "a"])),
    /heads\[0\].classes to be two or more distinct strings/,
  );
  assert.throws(
    broken((c) => (c.heads[1].standardization.scale[0] = 0)),
    /standardization.scale to be 3 positive numbers/,
  );
  assert.throws(() => parseClassifier([], "c.json"), /expected the file to be an object, got an array of 0/);
});

Deno.test("headToLinearModel() and linearModelToHead() round-trip a head", () => {
  const head = classifier().heads[1];
  const back = linearModelToHead("age", headToLinearModel(head));
  assert.deepEqual(back, head);
  const model = headToLinearModel(head);
  const p = linearProbabilities(model, [0, 5, 1, 1, 1], 2); // offset 2: the embedding (1, 1, 1)
  assert.ok(Math.abs(p.reduce((a, b) => a + b) - 1) < 1e-15);
});

Deno.test("argmax() sends ties to the first index", () => {
  assert.equal(argmax([0.2, 0.4, 0.4]), 1);
  assert.equal(argmax([0.5, 0.5]), 0);
});
