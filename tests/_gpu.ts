/**
 * The one place tests get a GPU device. Without an adapter a GPU test is skipped with the reason printed,
 * except under `CI`, where it fails: CI always has a software adapter.
 * @module
 */
import { acquireGpu, type Gpu } from "../engine/device.ts";

let shared: Promise<Gpu | string> | undefined;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Resolves to a device shared by the test process, or to the reason there is none. */
export function testGpu(): Promise<Gpu | string> {
  shared ??= acquireGpu().catch((e) => `${(e as Error).message}`);
  return shared;
}

/** Whether the slow tier (full-size models) should be skipped: set `DERM_SKIP_SLOW=1`. */
export const SKIP_SLOW = env("DERM_SKIP_SLOW") === "1";

/**
 * Whether the extended tier runs: tests too long for every CI run (R101x3 at f16 on lavapipe: 10 minutes),
 * run by `deno task test:extended` (`DERM_EXTENDED=1`). Deno lists them as ignored otherwise, never silently.
 */
export const RUN_EXTENDED = env("DERM_EXTENDED") === "1";

/**
 * Defines a test that needs a GPU: `fn` receives the device. Skips (printing why) when there is no
 * adapter, but fails under CI.
 */
export function gpuTest(
  name: string,
  fn: (gpu: Gpu) => Promise<void>,
  options: { slow?: boolean; extended?: boolean } = {},
) {
  Deno.test({
    name,
    ignore: (options.slow === true && SKIP_SLOW) || (options.extended === true && !RUN_EXTENDED),
    // Device, pipelines and shared buffers live for the whole process.
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const gpu = await testGpu();
      if (typeof gpu === "string") {
        if (env("CI")) throw new Error(`No WebGPU adapter under CI: ${gpu}`);
        console.warn(`skipped "${name}": ${gpu}`);
        return;
      }
      await fn(gpu);
    },
  });
}
