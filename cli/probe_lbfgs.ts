/**
 * L-BFGS minimisation of a smooth function (Nocedal & Wright, Numerical Optimization, 2nd ed.: the
 * two-loop recursion of Algorithm 7.4, the strong-Wolfe line search of Algorithms 3.5 and 3.6 with cubic
 * interpolation), in plain Float64Array code: the solver of `deno task probe`'s logistic regression.
 *
 * Stops when the largest gradient component is at most `gtol` (the criterion of SciPy's L-BFGS-B `gtol`,
 * which scikit-learn's `tol` sets), or when no step decreases the function any more (then `converged`
 * says whether the gradient test still held within 10 x `gtol`).
 * @module
 */

/** Writes the gradient at `x` into `g` and returns the function value. */
export type ObjectiveWithGradient = (x: Float64Array, g: Float64Array) => number;

/** Options of {@linkcode minimizeLbfgs}. */
export interface LbfgsOptions {
  /** Correction pairs kept (default 10). */
  memory?: number;
  /** Stop when max |g_i| <= gtol (default 1e-8). */
  gtol?: number;
  /** Iteration limit (default 10,000). */
  maxIterations?: number;
  /**
   * The initial inverse-Hessian approximation H0, applied in place to a vector (symmetric positive
   * definite; its scale does not matter: each iteration rescales it by s.y / y.H0 y). Default: identity.
   */
  precondition?: (v: Float64Array) => void;
}

/** What {@linkcode minimizeLbfgs} reached. */
export interface LbfgsResult {
  /** The minimiser found. */
  x: Float64Array;
  /** f(x). */
  f: number;
  /** max |g_i| at x. */
  gradMax: number;
  /** Iterations (line searches) made. */
  iterations: number;
  /** Function and gradient evaluations. */
  evaluations: number;
  /** Whether max |g_i| <= gtol (10 x gtol when the line search could make no more progress). */
  converged: boolean;
  /** Why it stopped: "gtol", "no progress" or "max iterations". */
  reason: "gtol" | "no progress" | "max iterations";
}

const C1 = 1e-4; // sufficient decrease (Armijo)
const C2 = 0.9; // curvature (strong Wolfe), the usual value for quasi-Newton methods
const MAX_LINE_EVALUATIONS = 40;
const ROUNDING = 1e-14; // relative rounding of f allowed by the approximate Wolfe test

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function maxAbs(a: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const v = Math.abs(a[i]);
    if (v > m || v !== v) m = v;
  }
  return m;
}

/** Minimiser of the cubic through (a, fa, ga) and (b, fb, gb), clamped inside [lo, hi] away from the ends. */
function cubicStep(a: number, fa: number, ga: number, b: number, fb: number, gb: number): number {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  const d1 = ga + gb - 3 * (fa - fb) / (a - b);
  const disc = d1 * d1 - ga * gb;
  let t = NaN;
  if (disc >= 0) {
    const d2 = Math.sign(b - a) * Math.sqrt(disc);
    t = b - (b - a) * (gb + d2 - d1) / (gb - ga + 2 * d2);
  }
  const margin = 0.1 * (hi - lo);
  if (!(t >= lo + margin && t <= hi - margin)) t = (lo + hi) / 2; // no usable cubic: bisect
  return t;
}

/**
 * Minimises `fg` from `x0` with L-BFGS.
 *
 * @param fg The objective: writes the gradient, returns the value.
 * @param x0 The starting point (not modified).
 * @param options Memory, tolerance, iteration limit.
 * @returns The point reached and how.
 * @throws {RangeError} When the objective is not finite at `x0`.
 * @example
 * ```ts
 * const r = minimizeLbfgs((x, g) => {
 *   g[0] = 2 * (x[0] - 3);
 *   return (x[0] - 3) ** 2;
 * }, new Float64Array(1));
 * // r.x[0] ≈ 3
 * ```
 */
export function minimizeLbfgs(
  fg: ObjectiveWithGradient,
  x0: Float64Array,
  options: LbfgsOptions = {},
): LbfgsResult {
  const m = options.memory ?? 10;
  const gtol = options.gtol ?? 1e-8;
  const maxIterations = options.maxIterations ?? 10_000;
  const precondition = options.precondition;
  const n = x0.length;
  const x = Float64Array.from(x0);
  const g = new Float64Array(n);
  let evaluations = 1;
  let f = fg(x, g);
  if (!Number.isFinite(f)) {
    throw new RangeError(`Cannot minimise: expected a finite value at the start, got ${f}`);
  }
  const s: Float64Array[] = [];
  const y: Float64Array[] = [];
  const rho: number[] = [];
  const alpha = new Float64Array(m);
  const p = new Float64Array(n);
  const xt = new Float64Array(n);
  const gt = new Float64Array(n);
  const hy = new Float64Array(n);
  let iterations = 0;
  let gradMax = maxAbs(g);
  let reason: LbfgsResult["reason"] = "max iterations";

  // f and slope along p at step t (into xt, gt).
  const probe = (t: number) => {
    for (let i = 0; i < n; i++) xt[i] = x[i] + t * p[i];
    evaluations++;
    const ft = fg(xt, gt);
    return { f: ft, g: dot(gt, p) };
  };

  while (true) {
    if (gradMax <= gtol) {
      reason = "gtol";
      break;
    }
    if (iterations >= maxIterations) break;
    // Direction p = -H g by the two-loop recursion.
    for (let i = 0; i < n; i++) p[i] = -g[i];
    for (let j = s.length - 1; j >= 0; j--) {
      alpha[j] = rho[j] * dot(s[j], p);
      const yj = y[j];
      for (let i = 0; i < n; i++) p[i] -= alpha[j] * yj[i];
    }
    if (precondition) precondition(p);
    if (s.length > 0) {
      const last = s.length - 1;
      hy.set(y[last]);
      if (precondition) precondition(hy);
      const gamma = dot(s[last], y[last]) / dot(y[last], hy);
      for (let i = 0; i < n; i++) p[i] *= gamma;
    }
    for (let j = 0; j < s.length; j++) {
      const beta = rho[j] * dot(y[j], p);
      const sj = s[j];
      for (let i = 0; i < n; i++) p[i] += (alpha[j] - beta) * sj[i];
    }
    let slope0 = dot(g, p);
    if (!(slope0 < 0) && s.length > 0) {
      // Not a descent direction (rounding): restart from steepest descent.
      s.length = y.length = rho.length = 0;
      for (let i = 0; i < n; i++) p[i] = -g[i];
      if (precondition) precondition(p);
      slope0 = dot(g, p);
    }
    const t0 = s.length === 0 ? Math.min(1, 1 / Math.sqrt(-slope0)) : 1;
    const step = lineSearch(f, slope0, t0, probe);
    iterations++;
    if (step === undefined) {
      reason = "no progress";
      break;
    }
    // Accept: x += t p (xt, gt hold the accepted point's values after lineSearch's final probe).
    const sNew = new Float64Array(n);
    const yNew = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      sNew[i] = xt[i] - x[i];
      yNew[i] = gt[i] - g[i];
    }
    x.set(xt);
    g.set(gt);
    f = step.f;
    gradMax = maxAbs(g);
    const sy = dot(sNew, yNew);
    if (sy > 1e-12 * dot(yNew, yNew)) {
      if (s.length === m) {
        s.shift();
        y.shift();
        rho.shift();
      }
      s.push(sNew);
      y.push(yNew);
      rho.push(1 / sy);
    }
  }
  const converged = reason === "gtol" || (reason === "no progress" && gradMax <= 10 * gtol);
  return { x, f, gradMax, iterations, evaluations, converged, reason };
}

/**
 * Strong-Wolfe line search along p from f0 with slope0 < 0, first trial t0. Leaves the accepted point
 * in the probe's buffers (the last probe made is always the accepted one: re-probed when needed).
 */
function lineSearch(
  f0: number,
  slope0: number,
  t0: number,
  probe: (t: number) => { f: number; g: number },
): { t: number; f: number } | undefined {
  const armijo = (t: number, ft: number) => ft <= f0 + C1 * t * slope0;
  const wolfe = (gt: number) => Math.abs(gt) <= -C2 * slope0;
  // Near the minimum f changes by less than its rounding and the Armijo test cannot see a decrease; there
  // the approximate Wolfe conditions of Hager & Zhang (SIAM J. Optim. 16, 2005) judge the step by its slope:
  // f no more than rounding above f0, slope between C2 slope0 and (2 C1 - 1) slope0.
  const approximate = (ft: number, gt: number) =>
    ft <= f0 + ROUNDING * Math.abs(f0) && gt >= C2 * slope0 && gt <= (2 * C1 - 1) * slope0;
  let tPrev = 0;
  let fPrev = f0;
  let gPrev = slope0;
  let t = t0;
  let best: { t: number; f: number } | undefined;
  for (let k = 0; k < MAX_LINE_EVALUATIONS; k++) {
    const v = probe(t);
    if (Number.isFinite(v.f) && approximate(v.f, v.g)) return { t, f: v.f };
    if (!Number.isFinite(v.f) || !armijo(t, v.f) || (k > 0 && v.f >= fPrev)) {
      return zoom(tPrev, fPrev, gPrev, t, v.f, v.g, best);
    }
    best = { t, f: v.f };
    if (wolfe(v.g)) return best;
    if (v.g >= 0) return zoom(t, v.f, v.g, tPrev, fPrev, gPrev, best);
    tPrev = t;
    fPrev = v.f;
    gPrev = v.g;
    t *= 2;
  }
  return reaccept(best);

  function zoom(
    lo: number,
    flo: number,
    glo: number,
    hi: number,
    fhi: number,
    ghi: number,
    bestSoFar: { t: number; f: number } | undefined,
  ): { t: number; f: number } | undefined {
    let b = bestSoFar;
    for (let k = 0; k < MAX_LINE_EVALUATIONS; k++) {
      if (Math.abs(hi - lo) <= 1e-16 * Math.max(1, Math.abs(lo))) break;
      const tj = Number.isFinite(fhi) ? cubicStep(lo, flo, glo, hi, fhi, ghi) : (lo + hi) / 2;
      const v = probe(tj);
      if (Number.isFinite(v.f) && approximate(v.f, v.g)) return { t: tj, f: v.f };
      if (!Number.isFinite(v.f) || !armijo(tj, v.f) || v.f >= flo) {
        hi = tj;
        fhi = v.f;
        ghi = v.g;
      } else {
        if (!b || v.f < b.f) b = { t: tj, f: v.f };
        if (wolfe(v.g)) return { t: tj, f: v.f };
        if (v.g * (hi - lo) >= 0) {
          hi = lo;
          fhi = flo;
          ghi = glo;
        }
        lo = tj;
        flo = v.f;
        glo = v.g;
      }
    }
    return reaccept(b);
  }

  // A step that satisfied Armijo but not the curvature test: probe it again so that the buffers hold it.
  function reaccept(b: { t: number; f: number } | undefined) {
    if (!b || !(b.f < f0)) return undefined;
    const v = probe(b.t);
    return { t: b.t, f: v.f };
  }
}
