/**
 * Times `deno task probe`'s logistic-regression solver on a synthetic problem of Derm Foundation's size:
 *
 *   deno run bench/probe_solver_bench.ts [--rows 10000] [--dim 6144] [--classes 2] [--rank 128] [--tol 1e-8]
 *
 * The features are correlated as embeddings are: 64 latent factors (variances falling from 16 to 1) mixed
 * into D features, plus noise, through a ReLU; the class is the argmax of noisy linear scores of the
 * factors, so the problem is not separable. Prints the solver's iterations, evaluations, final gradient
 * and seconds (the preconditioner's sketch included). `--rank 0` runs without the preconditioner.
 * @module
 */
import { parseArgs } from "node:util";
import { fitLogisticRegression, PRECONDITION_RANK } from "../cli/probe_logreg.ts";
import { seededRng } from "../cli/probe_split.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "10000" },
    dim: { type: "string", default: "6144" },
    classes: { type: "string", default: "2" },
    rank: { type: "string", default: String(PRECONDITION_RANK) },
    tol: { type: "string", default: "1e-8" },
  },
});
const n = Number(values.rows), d = Number(values.dim), K = Number(values.classes);
const L = 64;
const rng = seededRng(12345);
const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
const loads = Float64Array.from({ length: L * d }, () => gauss() / Math.sqrt(L));
const directions = Array.from({ length: K }, () => Float64Array.from({ length: L }, gauss));
const data = new Float32Array(n * d);
const y = new Int32Array(n);
const f = new Float64Array(L);
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  for (let l = 0; l < L; l++) f[l] = gauss() * (1 + 3 * Math.exp(-l / 8));
  const z = directions.map((dir) => 0.3 * dir.reduce((a, v, l) => a + v * f[l], 0) + 2 * gauss());
  y[i] = z.indexOf(Math.max(...z));
  for (let j = 0; j < d; j++) {
    let v = 0.4;
    for (let l = 0; l < L; l++) v += f[l] * loads[l * d + j];
    data[i * d + j] = Math.max(0, v + 0.2 * gauss());
  }
}
const generated = (performance.now() - t0) / 1000;
const rows = Int32Array.from({ length: n }, (_, i) => i);
const t1 = performance.now();
const fit = fitLogisticRegression(
  { data, d, rows },
  y,
  Array.from({ length: K }, (_, k) => `c${k}`),
  { tol: Number(values.tol), preconditionRank: Number(values.rank) },
);
const seconds = (performance.now() - t1) / 1000;
console.log(JSON.stringify({
  rows: n,
  dim: d,
  classes: K,
  rank: Number(values.rank),
  tol: Number(values.tol),
  iterations: fit.iterations,
  evaluations: fit.evaluations,
  grad_max: fit.gradMax,
  converged: fit.converged,
  seconds: Number(seconds.toFixed(1)),
  generate_seconds: Number(generated.toFixed(1)),
  cpu: navigator.hardwareConcurrency,
}));
