import assert from "node:assert/strict";
import { sampleShots, seededRng, shuffle, stratifiedFolds, stratifiedGroupFolds } from "./probe_split.ts";

/** 0 x 50, 1 x 23, 2 x 7, interleaved. */
const CLASSES = Array.from(
  { length: 80 },
  (_, i) => (i % 4 === 3 && i < 28 ? 2 : i % 2 === 0 || i >= 50 ? 0 : 1),
);

function counts(classes: number[], fold: Int32Array, folds: number, k: number): number[] {
  return Array.from({ length: folds }, (_, f) => classes.filter((c, i) => c === k && fold[i] === f).length);
}

Deno.test("seededRng() repeats its sequence for a seed and differs between seeds", () => {
  const a = seededRng(7), b = seededRng(7), c = seededRng(8);
  const sa = Array.from({ length: 5 }, a),
    sb = Array.from({ length: 5 }, b),
    sc = Array.from({ length: 5 }, c);
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  assert.ok(sa.every((u) => u >= 0 && u < 1));
});

Deno.test("shuffle() permutes", () => {
  const s = shuffle(Array.from({ length: 20 }, (_, i) => i), seededRng(1));
  assert.deepEqual([...s].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i));
  assert.notDeepEqual(s, Array.from({ length: 20 }, (_, i) => i));
});

Deno.test("stratifiedFolds() puts each class's count in every fold to within one, fold sizes to within one", () => {
  const classCounts = [0, 1, 2].map((k) => CLASSES.filter((c) => c === k).length);
  for (const folds of [2, 3, 5, 7]) {
    const fold = stratifiedFolds(CLASSES, folds, 3);
    for (const k of [0, 1, 2]) {
      const c = counts(CLASSES, fold, folds, k);
      assert.ok(Math.max(...c) - Math.min(...c) <= 1, `class ${k}, ${folds} folds: ${c}`);
      assert.equal(c.reduce((a, b) => a + b), classCounts[k]);
    }
    const sizes = Array.from({ length: folds }, (_, f) => fold.filter((g) => g === f).length);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `sizes ${sizes}`);
  }
});

Deno.test("stratifiedFolds() is the same for a seed and different for another", () => {
  assert.deepEqual(stratifiedFolds(CLASSES, 5, 1), stratifiedFolds(CLASSES, 5, 1));
  assert.notDeepEqual(stratifiedFolds(CLASSES, 5, 1), stratifiedFolds(CLASSES, 5, 2));
});

Deno.test("stratifiedFolds() refuses fewer than 2 folds and more folds than rows", () => {
  assert.throws(() => stratifiedFolds([0, 1, 0], 1, 0), RangeError);
  assert.throws(() => stratifiedFolds([0, 1, 0], 4, 0), RangeError);
});

Deno.test("stratifiedGroupFolds() never splits a group and keeps the class shares near even", () => {
  // 40 patients of 1 to 4 images; a patient's images mostly share a class.
  const rng = seededRng(5);
  const classes: number[] = [];
  const groups: string[] = [];
  for (let p = 0; p < 40; p++) {
    const size = 1 + Math.floor(rng() * 4);
    const base = p % 3 === 0 ? 1 : 0;
    for (let i = 0; i < size; i++) {
      classes.push(rng() < 0.85 ? base : 1 - base);
      groups.push(`patient-${p}`);
    }
  }
  for (const seed of [0, 1, 2]) {
    const fold = stratifiedGroupFolds(classes, groups, 4, seed);
    const where = new Map<string, number>();
    groups.forEach((g, i) => {
      if (where.has(g)) assert.equal(fold[i], where.get(g), `group ${g} split`);
      where.set(g, fold[i]);
    });
    for (const k of [0, 1]) {
      const total = classes.filter((c) => c === k).length;
      const c = counts(classes, fold, 4, k);
      // each fold holds between 15 % and 35 % of each class (even would be 25 %)
      assert.ok(
        c.every((x) => x >= 0.15 * total && x <= 0.35 * total),
        `seed ${seed} class ${k}: ${c} of ${total}`,
      );
    }
  }
});

Deno.test("stratifiedGroupFolds() refuses fewer groups than folds", () => {
  assert.throws(
    () => stratifiedGroupFolds([0, 1, 0, 1], ["a", "a", "b", "b"], 3, 0),
    (e) => e instanceof RangeError && /at least 3 groups, got 2/.test(e.message),
  );
});

Deno.test("sampleShots() takes that many rows of each class, all of a smaller class, in row order", () => {
  const rows = Array.from({ length: 80 }, (_, i) => i).filter((i) => i % 5 !== 0); // 64 candidate rows
  const chosen = sampleShots(rows, CLASSES, 3, seededRng(9));
  const per = [0, 1, 2].map((k) => chosen.filter((r) => CLASSES[r] === k).length);
  assert.deepEqual(per, [3, 3, 3]);
  assert.ok(chosen.every((r) => rows.includes(r)));
  assert.deepEqual(chosen, [...chosen].sort((a, b) => a - b));
  const many = sampleShots(rows, CLASSES, 1000, seededRng(9));
  assert.deepEqual(many, rows);
  assert.notDeepEqual(sampleShots(rows, CLASSES, 3, seededRng(10)), chosen);
});
