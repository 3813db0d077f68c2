import assert from "node:assert/strict";
import { CONV2D_VARIANT_NAMES, KERNELS, kernelSpec } from "./registry.ts";

Deno.test("KERNELS lists every variant once under its own name, with WGSL whose bindings match", () => {
  for (const [name, spec] of KERNELS) {
    assert.equal(spec.name, name);
    // Storage bindings 0..n-1 and the uniform buffer at n, all in group 0.
    for (let i = 0; i <= spec.bindings.length; i++) {
      assert.match(
        spec.wgsl,
        new RegExp(`@group\\(0\\)\\s*@binding\\(${i}\\)`),
        `${name} lacks binding ${i}`,
      );
    }
    assert.doesNotMatch(
      spec.wgsl,
      new RegExp(`@binding\\(${spec.bindings.length + 1}\\)`),
      `${name} has extra bindings`,
    );
    assert.match(spec.wgsl, /fn main\s*\(/, `${name} has no main`);
  }
  assert.ok(CONV2D_VARIANT_NAMES.includes("conv2d_tiled"));
});

Deno.test("kernelSpec() names the known variants when asked for an unknown one", () => {
  assert.equal(kernelSpec("max_pool").name, "max_pool");
  assert.throws(() => kernelSpec("conv9"), /Cannot find kernel "conv9": expected one of .*conv2d_tiled/);
});
