/**
 * Acquiring a WebGPU device with the adapter's own limits, and turning device loss and validation errors
 * into thrown errors that name the step that caused them.
 *
 * This module is browser compatible.
 * @module
 */
import { DeviceLostError, GpuError, WebGpuUnavailableError } from "./errors.ts";

/** Limits the engine raises to the adapter's maximum, because big convolutions need them. */
const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupsPerDimension",
] as const;

/** Options of {@linkcode acquireGpu}. */
export interface AcquireGpuOptions {
  /** Passed to `requestAdapter`. */
  powerPreference?: GPUPowerPreference;
  /** Ask for `shader-f16` when the adapter offers it (default true). */
  f16?: boolean;
  /** Ask for `timestamp-query` when the adapter offers it (default false). */
  timestamps?: boolean;
  /**
   * Ask for `subgroups` (default true). Deno 2.9 (wgpu 29) grants it on adapters whose `features` do not
   * list it (lavapipe), so it is asked for whatever the list says, and the device is requested again
   * without it when the adapter refuses.
   */
  subgroups?: boolean;
  /** The `navigator.gpu` to use (default the global one). */
  gpu?: GPU;
}

/** A device together with what is known about its adapter. */
export interface Gpu {
  /** The device. */
  readonly device: GPUDevice;
  /**
   * Adapter description, vendor and architecture, for logs and benchmark records; the subgroup sizes when
   * the adapter reports them.
   */
  readonly adapterInfo: {
    description: string;
    vendor: string;
    architecture: string;
    device: string;
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
  };
  /** Whether the adapter is a CPU rasteriser (a fallback adapter, or llvmpipe, lavapipe, SwiftShader). */
  readonly cpuAdapter: boolean;
  /** Features granted to the device. */
  readonly features: ReadonlySet<string>;
  /** Limits granted to the device (the adapter's maxima for {@linkcode WANTED_LIMITS}). */
  readonly limits: GPUSupportedLimits;
  /** Resolves with the loss error when the device is lost; never rejects. */
  readonly lost: Promise<DeviceLostError>;
  /** The loss error once the device has been lost, else undefined. */
  lostError(): DeviceLostError | undefined;
  /** Destroys the device. */
  destroy(): void;
}

/**
 * Requests an adapter and a device with the adapter's own limits for storage binding size, buffer size
 * and workgroup storage, and `shader-f16` where offered.
 *
 * @param options Adapter and feature preferences.
 * @returns The device and adapter facts.
 * @throws {WebGpuUnavailableError} When there is no WebGPU or no adapter.
 * @example
 * ```ts
 * const gpu = await acquireGpu();
 * console.log(gpu.adapterInfo.description);
 * gpu.destroy();
 * ```
 */
export async function acquireGpu(options: AcquireGpuOptions = {}): Promise<Gpu> {
  const gpu = options.gpu ?? (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) {
    throw new WebGpuUnavailableError(
      "Cannot find WebGPU: navigator.gpu is undefined (in Deno, run with --unstable-webgpu)",
    );
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference });
  } catch (cause) {
    throw new WebGpuUnavailableError(`Cannot request a WebGPU adapter: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (!adapter) {
    throw new WebGpuUnavailableError(
      "Cannot find a WebGPU adapter: requestAdapter() returned null (no GPU driver, and no software " +
        "adapter such as Mesa's llvmpipe or lavapipe)",
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  const requiredFeatures: GPUFeatureName[] = [];
  if (options.f16 !== false && adapter.features.has("shader-f16")) requiredFeatures.push("shader-f16");
  if (options.timestamps && adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
  let device: GPUDevice;
  try {
    const withSubgroups: GPUFeatureName[] = options.subgroups === false
      ? requiredFeatures
      : [...requiredFeatures, "subgroups" as GPUFeatureName];
    device = await adapter.requestDevice({
      requiredLimits,
      requiredFeatures: withSubgroups,
      label: "derm-webgpu",
    });
  } catch (e) {
    // An adapter without subgroups refuses the feature with a TypeError before it is consumed.
    if (options.subgroups === false || !(e instanceof TypeError)) throw e;
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: "derm-webgpu" });
  }
  const info = (adapter.info ?? {}) as GPUAdapterInfo & {
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    isFallbackAdapter?: boolean;
  };
  let lostError: DeviceLostError | undefined;
  const lost = device.lost.then((info) => {
    lostError = new DeviceLostError(
      info.reason ?? "unknown",
      `GPU device lost: ${info.message || info.reason}`,
    );
    return lostError;
  });
  return {
    device,
    adapterInfo: {
      description: info.description || "unknown adapter",
      vendor: info.vendor ?? "",
      architecture: info.architecture ?? "",
      device: info.device ?? "",
      subgroupMinSize: info.subgroupMinSize,
      subgroupMaxSize: info.subgroupMaxSize,
    },
    cpuAdapter: info.isFallbackAdapter === true || isSoftwareAdapter(info.description ?? ""),
    features: new Set([...device.features] as string[]),
    limits: device.limits,
    lost,
    lostError: () => lostError,
    destroy: () => device.destroy(),
  };
}

/**
 * Runs `fn` inside validation and out-of-memory error scopes and throws a {@linkcode GpuError} naming
 * `layer` when either caught an error.
 *
 * @param device The device whose calls `fn` makes.
 * @param layer The step being performed, e.g. `stage3.unit07.conv2/conv2d_tiled` or `load weights`.
 * @param fn The GPU calls to check.
 * @returns What `fn` returned.
 */
export async function checkedGpuCall<T>(device: GPUDevice, layer: string, fn: () => T): Promise<T> {
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let result: T;
  try {
    result = fn();
  } finally {
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    const error = validation ?? oom;
    if (error) {
      const kind = oom && !validation ? "out of GPU memory" : "GPU validation error";
      // deno-lint-ignore no-unsafe-finally
      throw new GpuError(layer, `${kind} in "${layer}": ${error.message}`);
    }
  }
  return result;
}

/** Adapters that are CPU rasterisers by their description, where the defaults are the measured best. */
export function isSoftwareAdapter(description: string): boolean {
  return /llvmpipe|lavapipe|swiftshader|software/i.test(description);
}

/** Describes the device for `--verbose`: adapter and the limits that matter to the engine. */
export function describeGpu(gpu: Gpu): string {
  const l = gpu.limits as unknown as Record<string, number>;
  const lines = [
    `adapter: ${gpu.adapterInfo.description}` +
    (gpu.adapterInfo.vendor ? ` (vendor ${gpu.adapterInfo.vendor})` : ""),
    `features: ${[...gpu.features].sort().join(", ") || "none"}`,
    ...WANTED_LIMITS.map((name) => `${name}: ${l[name]}`),
  ];
  return lines.join("\n");
}
