/** Seeded random data for kernel tests (mulberry32), so failures reproduce. @module */

/** Returns `n` floats uniform in [lo, hi) from `seed`. */
export function randomFloats(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** {@linkcode randomFloats} rounded to float32: what a GPU buffer of f32 holds. */
export function randomF32(n: number, seed: number, lo = -1, hi = 1): Float32Array<ArrayBuffer> {
  return Float32Array.from(randomFloats(n, seed, lo, hi));
}

/** {@linkcode randomF32} as float64, so a float64 reference sees exactly the kernel's inputs. */
export function randomF32AsF64(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  return Float64Array.from(randomF32(n, seed, lo, hi));
}
