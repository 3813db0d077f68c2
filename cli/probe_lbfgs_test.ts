import assert from "node:assert/strict";
import { minimizeLbfgs } from "./probe_lbfgs.ts";

/** f(x) = 1/2 sum_i a_i (x_i - c_i)^2. */
function quadratic(a: number[], c: number[]) {
  return (x: Float64Array, g: Float64Array) => {
    let f = 0;
    for (let i = 0; i < x.length; i++) {
      const t = x[i] - c[i];
      f += 0.5 * a[i] * t * t;
      g[i] = a[i] * t;
    }
    return f;
  };
}

Deno.test("minimizeLbfgs() finds the minimum of an ill-conditioned quadratic to the gradient tolerance", () => {
  const a = Array.from({ length: 50 }, (_, i) => 10 ** (i / 10)); // condition number 7.9e4
  const c = Array.from({ length: 50 }, (_, i) => Math.sin(i));
  const r = minimizeLbfgs(quadratic(a, c), new Float64Array(50), { gtol: 1e-10 });
  assert.equal(r.reason, "gtol");
  assert.ok(r.converged);
  assert.ok(r.gradMax <= 1e-10);
  for (let i = 0; i < 50; i++) assert.ok(Math.abs(r.x[i] - c[i]) <= 1e-10 / a[i] * 10, `x[${i}]`);
});

Deno.test("minimizeLbfgs() minimises the Rosenbrock function from (-1.2, 1)", () => {
  const rosen = (x: Float64Array, g: Float64Array) => {
    const [u, v] = x;
    g[0] = -2 * (1 - u) - 400 * u * (v - u * u);
    g[1] = 200 * (v - u * u);
    return (1 - u) ** 2 + 100 * (v - u * u) ** 2;
  };
  const r = minimizeLbfgs(rosen, Float64Array.of(-1.2, 1), { gtol: 1e-9 });
  assert.ok(r.converged, r.reason);
  assert.ok(Math.abs(r.x[0] - 1) < 1e-6 && Math.abs(r.x[1] - 1) < 1e-6, `${r.x}`);
  assert.ok(r.iterations < 100, `${r.iterations} iterations`);
});

Deno.test("minimizeLbfgs() needs far fewer iterations with the exact inverse Hessian as preconditioner", () => {
  const a = Array.from({ length: 200 }, (_, i) => 10 ** (i / 40));
  const c = Array.from({ length: 200 }, (_, i) => Math.cos(i));
  const plain = minimizeLbfgs(quadratic(a, c), new Float64Array(200), { gtol: 1e-9, memory: 5 });
  const pre = minimizeLbfgs(quadratic(a, c), new Float64Array(200), {
    gtol: 1e-9,
    memory: 5,
    precondition: (v) => v.forEach((x, i) => (v[i] = x / a[i])),
  });
  assert.ok(plain.converged && pre.converged);
  assert.ok(pre.iterations <= 3, `${pre.iterations} preconditioned iterations`);
  assert.ok(plain.iterations > 20, `${plain.iterations} plain iterations`);
  for (let i = 0; i < 200; i++) assert.ok(Math.abs(pre.x[i] - c[i]) < 1e-8);
});

Deno.test("minimizeLbfgs() stops at the iteration limit and says so", () => {
  const a = Array.from({ length: 30 }, (_, i) => 10 ** (i / 5));
  const r = minimizeLbfgs(quadratic(a, a.map(() => 1)), new Float64Array(30), { maxIterations: 3 });
  assert.equal(r.iterations, 3);
  assert.equal(r.reason, "max iterations");
  assert.equal(r.converged, false);
});

Deno.test("minimizeLbfgs() refuses a start where the function is not finite", () => {
  assert.throws(
    () => minimizeLbfgs((_x, g) => (g.fill(0), NaN), new Float64Array(2)),
    (e) => e instanceof RangeError && /finite value at the start, got NaN/.test(e.message),
  );
});

Deno.test("minimizeLbfgs() does not modify its starting point", () => {
  const x0 = Float64Array.of(5, -5);
  minimizeLbfgs(quadratic([1, 2], [0, 0]), x0);
  assert.deepEqual(Array.from(x0), [5, -5]);
});
