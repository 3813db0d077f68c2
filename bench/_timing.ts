/**
 * Timing helpers shared by the bench files.
 *
 * Deno's WebGPU adds a fixed delay (about 10 ms) to every `onSubmittedWorkDone` and `mapAsync`, so a single
 * dispatch timed by wall clock is mostly that delay. Both helpers amortise it: t_0 = the faster of two
 * empty submissions (the fixed cost); each trial submits R repeats and waits once; wall ms per repeat =
 * (t_R - t_0) / R. R is chosen from one timed repeat so that all trials take about `budgetMs`.
 * {@linkcode timeOnGpu} also brackets each trial with timestamp queries (beginning of its first pass, end
 * of its last pass) when the device has `timestamp-query`; those ticks are read back after all trials, so
 * the readback is outside every timed window. Figures are medians over trials, after one warm-up.
 * @module
 */

/** Result of a timing. */
export interface Timing {
  /** Median wall ms per repeat, fixed submission cost removed. */
  readonly wallMs: number;
  /** Median GPU ms per repeat from timestamp queries, when the device has them. */
  readonly gpuMs?: number;
  /** Repeats per trial. */
  readonly repeats: number;
  /** Trials. */
  readonly trials: number;
}

/** Budget options. */
export interface TimingOptions {
  /** Wall-clock budget for all trials in ms (default 2000). */
  budgetMs?: number;
  /** Trials (default 5; fewer, at least 2, when one repeat takes longer than the budget allows). */
  trials?: number;
  /** Most repeats per trial (default 20). */
  maxRepeats?: number;
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function plan(oneMs: number, options: TimingOptions): { repeats: number; trials: number } {
  const budget = options.budgetMs ?? 2000;
  const wanted = options.trials ?? 5;
  const trials = Math.max(2, Math.min(wanted, Math.round(budget / Math.max(oneMs, 0.5))));
  const repeats = Math.max(
    1,
    Math.min(options.maxRepeats ?? 20, Math.round(budget / trials / Math.max(oneMs, 0.5))),
  );
  return { repeats, trials };
}

/**
 * Times GPU work that `encode` records into a command encoder (one or more compute passes).
 *
 * @param device The device.
 * @param encode Records one repeat; `timestampWrites` must go to the pass it is given to, when given
 *   (the first repeat gets the beginning write, the last the end write; a repeat with one pass gets both).
 * @param options Budget, trials and most repeats.
 * @returns Median wall and GPU ms per repeat.
 */
export async function timeOnGpu(
  device: GPUDevice,
  encode: (encoder: GPUCommandEncoder, timestampWrites?: GPUComputePassTimestampWrites) => void,
  options: TimingOptions = {},
): Promise<Timing> {
  const submit = async (repeats: number, querySet?: GPUQuerySet, q = 0) => {
    const t = performance.now();
    const encoder = device.createCommandEncoder({ label: "bench" });
    for (let r = 0; r < repeats; r++) {
      // A pass may only carry timestampWrites that name at least one index: middle repeats get none.
      let writes: GPUComputePassTimestampWrites | undefined;
      if (querySet && (r === 0 || r === repeats - 1)) {
        writes = { querySet };
        if (r === 0) writes.beginningOfPassWriteIndex = q;
        if (r === repeats - 1) writes.endOfPassWriteIndex = q + 1;
      }
      encode(encoder, writes);
    }
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t;
  };
  await submit(1); // warm-up: pipeline compilation, first touch of the buffers
  const t0 = Math.min(await submit(0), await submit(0));
  const one = Math.max(0, (await submit(1)) - t0);
  const { repeats, trials } = plan(one, options);
  const hasTimestamps = device.features.has("timestamp-query");
  const querySet = hasTimestamps
    ? device.createQuerySet({ label: "bench/timestamps", type: "timestamp", count: 2 * trials })
    : undefined;
  const walls: number[] = [];
  try {
    for (let i = 0; i < trials; i++) {
      walls.push(Math.max(0, (await submit(repeats, querySet, 2 * i)) - t0) / repeats);
    }
    let gpuMs: number | undefined;
    if (querySet) {
      const bytes = 2 * trials * 8;
      const resolve = device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      const read = device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      try {
        const encoder = device.createCommandEncoder({ label: "bench/resolve" });
        encoder.resolveQuerySet(querySet, 0, 2 * trials, resolve, 0);
        encoder.copyBufferToBuffer(resolve, 0, read, 0, bytes);
        device.queue.submit([encoder.finish()]);
        await read.mapAsync(GPUMapMode.READ);
        const ticks = new BigInt64Array(read.getMappedRange().slice(0));
        read.unmap();
        const per: number[] = [];
        for (let i = 0; i < trials; i++) per.push(Number(ticks[2 * i + 1] - ticks[2 * i]) / 1e6 / repeats);
        if (per.every((x) => Number.isFinite(x) && x > 0)) gpuMs = median(per);
      } finally {
        resolve.destroy();
        read.destroy();
      }
    }
    return { wallMs: median(walls), gpuMs, repeats, trials };
  } finally {
    querySet?.destroy();
  }
}

/**
 * Times work submitted by another engine (ONNX Runtime Web, TF.js) by wall clock: `run` submits one
 * repeat without reading back; `sync` waits until all submitted work is done.
 *
 * @param run Submits one repeat.
 * @param sync Waits for the submitted work (one fixed delay, amortised over the repeats).
 * @param options Budget, trials and most repeats.
 * @returns Median wall ms per repeat.
 */
export async function timeByWall(
  run: () => unknown,
  sync: () => Promise<unknown>,
  options: TimingOptions = {},
): Promise<Timing> {
  const submit = async (repeats: number) => {
    const t = performance.now();
    for (let r = 0; r < repeats; r++) await run();
    await sync();
    return performance.now() - t;
  };
  await submit(1);
  const t0 = Math.min(await submit(0), await submit(0));
  const one = Math.max(0, (await submit(1)) - t0);
  const { repeats, trials } = plan(one, options);
  const walls: number[] = [];
  for (let i = 0; i < trials; i++) walls.push(Math.max(0, (await submit(repeats)) - t0) / repeats);
  return { wallMs: median(walls), repeats, trials };
}

/** Largest |a - b| over max |b| (b the reference), Infinity on NaN or a length mismatch. */
export function relativeMaxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return Infinity;
    diff = Math.max(diff, d);
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, 1e-30);
}
