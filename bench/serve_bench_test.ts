import assert from "node:assert/strict";
import { quantile } from "./serve_bench.ts";

Deno.test("quantile() takes the nearest rank, whatever the order of the values", () => {
  const values = [50, 10, 40, 20, 30];
  assert.equal(quantile(values, 0.5), 30);
  assert.equal(quantile(values, 0.99), 50);
  assert.equal(quantile(values, 0), 10);
  assert.equal(quantile(Array.from({ length: 100 }, (_, i) => 100 - i), 0.99), 99);
  assert.ok(Number.isNaN(quantile([], 0.5)));
  assert.deepEqual(values, [50, 10, 40, 20, 30], "the input was sorted in place");
});
