/**
 * Reads the K loop out of a generated GEMM kernel, for the tests that check it is unrolled.
 * @module
 */

/** The body of a generated kernel's K loop (`for (var t = 0u; t < nt; t++) { ... }`), comments removed. */
export function kLoopBody(wgsl: string): string {
  const start = wgsl.indexOf("for (var t = 0u; t < nt; t++) {");
  if (start < 0) throw new Error("no K loop");
  let depth = 0;
  for (let i = wgsl.indexOf("{", start); i < wgsl.length; i++) {
    if (wgsl[i] === "{") depth++;
    if (wgsl[i] === "}" && --depth === 0) {
      return wgsl.slice(start, i + 1).replace(/\/\/[^\n]*/g, "");
    }
  }
  throw new Error("unbalanced K loop");
}
