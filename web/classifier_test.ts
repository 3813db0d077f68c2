import assert from "node:assert/strict";
import { applyClassifier, classifierMismatches, parseClassifier } from "./classifier.ts";
import { probeClassifierJson, probeEmbeddings, sklearnProbabilities } from "../tests/_probe_classifier.ts";

for (const label of ["benign_malignant", "age_group"] as const) {
  Deno.test(`applyClassifier() gives scikit-learn's predict_proba for the probe's ${label} fit`, () => {
    const classifier = parseClassifier(JSON.stringify(probeClassifierJson(label)), `${label}.json`);
    const embeddings = probeEmbeddings();
    const want = sklearnProbabilities(label);
    let worst = 0;
    for (const [path, p] of want) {
      const got = applyClassifier(classifier, embeddings.get(path)!);
      assert.equal(got.length, classifier.classes.length);
      for (let k = 0; k < p.length; k++) worst = Math.max(worst, Math.abs(got[k] - p[k]));
    }
    console.log(`${label}: ${want.size} test rows, max |p - sklearn| ${worst.toExponential(2)}`);
    assert.ok(worst <= 1e-9, `max difference ${worst}`);
  });
}

Deno.test("applyClassifier() standardises before the weights and takes sigmoid for one row", () => {
  const c = parseClassifier({
    classes: ["no", "yes"],
    weights: [[2, -1]],
    intercepts: [0.5],
    standardize: { mean: [1, 2], std: [2, 4] },
    model: { model: "m", architecture: "a", preset: "derm", input_size: 64, embedding_size: 2 },
  });
  // x' = ((3 - 1) / 2, (10 - 2) / 4) = (1, 2); z = 2 - 2 + 0.5 = 0.5
  const [no, yes] = applyClassifier(c, [3, 10]);
  assert.ok(Math.abs(yes - 1 / (1 + Math.exp(-0.5))) < 1e-15);
  assert.ok(Math.abs(no + yes - 1) < 1e-15);
  // A large negative logit does not overflow.
  const [, tiny] = applyClassifier(c, [-1000, 2]);
  assert.ok(tiny >= 0 && tiny < 1e-300);
});

Deno.test("applyClassifier() takes softmax over K rows and refuses another embedding size", () => {
  const c = parseClassifier({
    classes: ["a", "b", "c"],
    weights: [[1], [0], [-1]],
    intercepts: [0, 0, 0],
    model: { embedding_size: 1 },
  });
  const p = applyClassifier(c, [Math.log(2)]);
  const e = [2, 1, 0.5];
  e.forEach((v, k) => assert.ok(Math.abs(p[k] - v / 3.5) < 1e-15));
  assert.throws(() => applyClassifier(c, [1, 2]), RangeError);
});

Deno.test("parseClassifier() names the field when the file is malformed", () => {
  const good = probeClassifierJson("age_group");
  const cases: [Record<string, unknown> | string, RegExp][] = [
    ["{not json", /not JSON/],
    [{ ...good, classes: ["one"] }, /"classes"/],
    [{ ...good, intercepts: [0, 0] }, /"intercepts" to hold 3/],
    [{ ...good, weights: [[1, 2], [1, 2], [1]] }, /"weights\[2\]" to hold 2/],
    [{ ...good, weights: [[1, 2], [1, 2]] }, /3 rows of "weights"/],
    [{ ...good, weights: [[NaN], [1], [1]] }, /finite numbers in "weights\[0\]"/],
    [
      { ...good, standardize: { mean: Array(1024).fill(0), std: Array(1024).fill(0) } },
      /"standardize.std" > 0/,
    ],
    [{ ...good, model: { ...(good.model as object), embedding_size: 6144 } }, /embedding_size/],
    [{ ...good, model: undefined }, /"model" object/],
  ];
  for (const [json, message] of cases) {
    assert.throws(() => parseClassifier(json, "c.json"), (e: Error) => {
      assert.ok(e instanceof TypeError, String(e));
      assert.match(e.message, /^Cannot read classifier "c.json": /);
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("classifierMismatches() lists what differs from the loaded model", () => {
  const c = parseClassifier(probeClassifierJson("benign_malignant"));
  const same = {
    model: "x",
    architecture: c.model.architecture,
    preset: "derm",
    size: 64,
    embeddingSize: 1024,
  };
  assert.deepEqual(classifierMismatches(c, same), []);
  const other = classifierMismatches(c, { ...same, preset: "bit", size: 96, embeddingSize: 2048 });
  assert.equal(other.length, 3);
  assert.match(other.join("\n"), /embedding size: trained on 1024, this model gives 2048/);
  assert.match(other.join("\n"), /input size: trained on 64, loaded 96/);
});
