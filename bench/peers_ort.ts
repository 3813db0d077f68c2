/**
 * ONNX Runtime Web's WebGPU execution provider as a peer: one-node graphs, MatMul and whole graphs written
 * by `onnx_export.ts` / `onnx_writer.ts`, run on the same adapter (ORT creates its own device on it).
 *
 * ORT's Conv is NCHW, its native layout, and is timed that way: inputs are transposed on the CPU before
 * upload, outputs transposed back for the comparison with ours (`layouts.ts`). Inputs stay on the GPU
 * (`Tensor.fromGpuBuffer`) and outputs too (`preferredOutputLocation: "gpu-buffer"`), so a timed repeat
 * is one `session.run` with no upload or readback; the device's `onSubmittedWorkDone` closes each trial.
 * The wasm part runs single-threaded (`numThreads = 1`); its files are loaded from the package's dist folder.
 * @module
 */
import * as ort from "onnxruntime-web/webgpu";
import { timeByWall, type Timing, type TimingOptions } from "./_timing.ts";

/** A named float32 input. */
export interface PeerInput {
  readonly name: string;
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

/** ORT's version string. */
export const ORT_VERSION: string = ort.env.versions.web ?? "unknown";

let configured = false;

function configure(): void {
  if (configured) return;
  configured = true;
  const entry = import.meta.resolve("onnxruntime-web/webgpu");
  ort.env.wasm.wasmPaths = new URL("./", entry).href;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error";
}

/** A loaded ORT model with GPU-resident inputs. */
export class OrtModel {
  #session: ort.InferenceSession;
  #device: GPUDevice;
  #feeds: Record<string, ort.Tensor>;
  #buffers: GPUBuffer[];
  #output: string;

  private constructor(
    session: ort.InferenceSession,
    device: GPUDevice,
    feeds: Record<string, ort.Tensor>,
    buffers: GPUBuffer[],
    output: string,
  ) {
    this.#session = session;
    this.#device = device;
    this.#feeds = feeds;
    this.#buffers = buffers;
    this.#output = output;
  }

  /**
   * Creates a session from ONNX bytes and uploads `inputs` once.
   *
   * @param bytes The model.
   * @param inputs Input tensors (float32).
   * @param output The output to read.
   */
  static async create(bytes: Uint8Array, inputs: readonly PeerInput[], output: string): Promise<OrtModel> {
    configure();
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["webgpu"],
      preferredOutputLocation: "gpu-buffer",
      graphOptimizationLevel: "all",
    });
    const device = (await ort.env.webgpu.device) as GPUDevice;
    const buffers: GPUBuffer[] = [];
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of inputs) {
      const buffer = device.createBuffer({
        label: `ort/${input.name}`,
        size: Math.ceil(input.data.byteLength / 16) * 16,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(buffer, 0, input.data as Float32Array<ArrayBuffer>);
      buffers.push(buffer);
      feeds[input.name] = ort.Tensor.fromGpuBuffer(buffer, { dataType: "float32", dims: input.dims });
    }
    return new OrtModel(session, device, feeds, buffers, output);
  }

  /** Runs once and reads the output back. */
  async run(): Promise<Float32Array> {
    const result = await this.#session.run(this.#feeds);
    const out = result[this.#output];
    try {
      return new Float32Array((await out.getData(true)) as Float32Array);
    } finally {
      for (const t of Object.values(result)) if (t !== out) t.dispose();
    }
  }

  /** Times `session.run` with GPU-resident inputs and outputs. */
  time(options: TimingOptions): Promise<Timing> {
    return timeByWall(
      async () => {
        const result = await this.#session.run(this.#feeds);
        for (const t of Object.values(result)) t.dispose();
      },
      () => this.#device.queue.onSubmittedWorkDone(),
      options,
    );
  }

  /** Releases the session and input buffers. */
  async dispose(): Promise<void> {
    for (const t of Object.values(this.#feeds)) t.dispose();
    for (const b of this.#buffers) b.destroy();
    await this.#session.release();
  }
}
