/**
 * Maps library errors to one stderr message and an exit code, for every command.
 * @module
 */
import {
  DeviceLostError,
  GpuError,
  ImageError,
  NonFiniteError,
  WebGpuUnavailableError,
  WeightsError,
} from "../engine/errors.ts";

/** Exit code: no WebGPU adapter. */
export const EXIT_NO_GPU = 3;

/** Prints `e` as one line (its stack with `verbose`) and returns the exit code. */
export function reportError(e: unknown, verbose: boolean): number {
  const error = e instanceof Error ? e : new Error(String(e));
  let message = error.message;
  if (error instanceof GpuError) message += ` [layer ${error.layer}]`;
  if (error instanceof NonFiniteError && error.layer) message += ` [first at ${error.layer}]`;
  console.error(`error: ${message}`);
  if (verbose && error.stack) console.error(error.stack);
  if (error instanceof WebGpuUnavailableError) {
    console.error(
      "hint: on Linux without a GPU, install Mesa (llvmpipe through GL, or mesa-vulkan-drivers for lavapipe); " +
        "DENO_WEBGPU_BACKEND=gl|vulkan picks the backend",
    );
    return EXIT_NO_GPU;
  }
  if (error instanceof DeviceLostError) {
    console.error("hint: the GPU device was lost; rerun, perhaps with a smaller --batch");
  }
  void ImageError;
  void WeightsError;
  return 1;
}
