import assert from "node:assert/strict";
import { applyClassifier, classifierMismatches, parseClassifier } from "./classifier.ts";
import {
  PROBE_ARCHITECTURE,
  probeClassifierJson,
  probeEmbeddings,
  sklearnProbabilities,
} from "../tests/_probe_classifier.ts";

for (const label of ["benign_malignant", "age_group"] as const) {
  Deno.test(`applyClassifier() gives scikit-learn's predict_proba for the probe's ${label} fit`, () => {
    const classifier = parseClassifier(JSON.stringify(probeClassifierJson(label)), `${label}.json`);
    assert.equal(classifier.head.label, label);
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

/** A classifier file of D = 2 with the given heads. */
function file(heads: unknown[], embedding: Record<string, unknown> = {}) {
  return {
    format: "derm-webgpu-classifier",
    version: 1,
    embedding: {
      model: "m",
      architecture: "a",
      preset: "derm",
      input_size: 64,
      embedding_size: 2,
      ...embedding,
    },
    training: {},
    heads,
  };
}

const binary = {
  label: "yes_no",
  classes: ["no", "yes"],
  weights: [[2, -1]],
  intercepts: [0.5],
  standardization: { mean: [1, 2], scale: [2, 4] },
};
const three = {
  label: "abc",
  classes: ["a", "b", "c"],
  weights: [[1, 0], [0, 0], [-1, 0]],
  intercepts: [0, 0, 0],
  standardization: null,
};

Deno.test("applyClassifier() standardises before the weights and takes sigmoid for one row", () => {
  const c = parseClassifier(file([binary]));
  // x' = ((3 - 1) / 2, (10 - 2) / 4) = (1, 2); z = 2 - 2 + 0.5 = 0.5
  const [no, yes] = applyClassifier(c, [3, 10]);
  assert.ok(Math.abs(yes - 1 / (1 + Math.exp(-0.5))) < 1e-15);
  assert.ok(Math.abs(no + yes - 1) < 1e-15);
  // A large negative logit does not overflow.
  const [, tiny] = applyClassifier(c, [-1000, 2]);
  assert.ok(tiny >= 0 && tiny < 1e-300);
});

Deno.test("applyClassifier() takes softmax over K rows and refuses another embedding size", () => {
  const c = parseClassifier(file([three]));
  const p = applyClassifier(c, [Math.log(2), 7]);
  const e = [2, 1, 0.5];
  e.forEach((v, k) => assert.ok(Math.abs(p[k] - v / 3.5) < 1e-15));
  assert.throws(() => applyClassifier(c, [1, 2, 3]), RangeError);
});

Deno.test("parseClassifier() shows the first head, or the one ?head= names", () => {
  assert.equal(parseClassifier(file([binary, three])).head.label, "yes_no");
  const c = parseClassifier(file([binary, three]), "two.json", "abc");
  assert.deepEqual(c.classes, ["a", "b", "c"]);
  assert.throws(
    () => parseClassifier(file([binary, three]), "two.json", "age"),
    /^TypeError: Cannot read classifier "two.json": no head for label "age" \(it has "yes_no", "abc"\)/,
  );
});

Deno.test("parseClassifier() names the file and the field when the file is malformed", () => {
  const good = probeClassifierJson("age_group");
  const head = (good.heads as Record<string, unknown>[])[0];
  const withHead = (change: Record<string, unknown>) => ({ ...good, heads: [{ ...head, ...change }] });
  const cases: [Record<string, unknown> | string, RegExp][] = [
    ["{not json", /not JSON/],
    [{ ...good, format: "sklearn" }, /format/],
    [withHead({ classes: ["one"] }), /heads\[0\]\.classes/],
    [withHead({ intercepts: [0, 0] }), /heads\[0\]\.intercepts/],
    [withHead({ weights: (head.weights as number[][]).slice(0, 2) }), /heads\[0\]\.weights to be 3 rows/],
    [withHead({ weights: [[NaN], [1], [1]] }), /heads\[0\]\.weights\[0\]/],
    [
      withHead({ standardization: { mean: Array(1024).fill(0), scale: Array(1024).fill(0) } }),
      /standardization\.scale to be 1024 positive numbers/,
    ],
    [{ ...good, embedding: { ...(good.embedding as object), embedding_size: 6144 } }, /weights\[0\]/],
    [{ ...good, embedding: undefined }, /embedding to be an object/],
    [{ ...good, heads: [] }, /heads to be a non-empty array/],
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

Deno.test("classifierMismatches() lists what differs from the loaded model, skipping unrecorded facts", () => {
  const c = parseClassifier(probeClassifierJson("benign_malignant"));
  const same = {
    model: "x",
    architecture: PROBE_ARCHITECTURE,
    preset: "derm",
    size: 64,
    embeddingSize: 1024,
  };
  assert.deepEqual(classifierMismatches(c, same), []);
  const other = classifierMismatches(c, { ...same, preset: "bit", size: 96, embeddingSize: 2048 });
  assert.equal(other.length, 3);
  assert.match(other.join("\n"), /embedding size: trained on 1024, this model gives 2048/);
  assert.match(other.join("\n"), /input size: trained on 64, loaded 96/);
  const unrecorded = parseClassifier(file([three], { architecture: null, preset: null, input_size: null }));
  assert.deepEqual(
    classifierMismatches(unrecorded, { ...same, architecture: "other", size: 448, embeddingSize: 2 }),
    [],
  );
});
