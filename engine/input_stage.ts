/**
 * The input stage: decoded images in, the model input tensor f32 NHWC [N, S, S, 4] (RGB and a zero
 * channel, so the first convolution reads vec4) out, following the model's {@linkcode Preprocessing}.
 *
 * Each image is uploaded once as RGBA8 words and goes through the resize kernel into its batch slot; a
 * `pillow-bilinear` image is first resized and cropped on the CPU, exactly as Pillow does, and then goes
 * through the same kernel at S -> S, where the interpolation is the identity and only the scaling acts.
 * One pixel buffer, uniform buffer and bind group per batch slot are made once and remade only when an
 * image larger than every earlier one arrives.
 *
 * The resize kernel comes from `kernels/` through {@linkcode InputResizeKernel} (the engine imports no
 * kernel).
 *
 * This module is browser compatible.
 * @module
 */
import type { KernelLaunch, KernelSpec, LaunchLimits } from "./kernel.ts";
import { type DecodedImage, packPixels } from "./image_decode.ts";
import { type ChannelTriple, checkPreprocessing, type Preprocessing } from "./preprocessing.ts";
import { pillowResizeCrop } from "./pillow_resize.ts";

/** One resize launch: source size, output side, slot, batch and scaling. */
export interface InputResizeShape {
  readonly srcWidth: number;
  readonly srcHeight: number;
  readonly size: number;
  readonly n: number;
  readonly batch: number;
  readonly scale: ChannelTriple;
  readonly offset: ChannelTriple;
}

/** The resize kernel: `pixels` (u32 RGBA8 words) at binding 0, the model input at binding 1. */
export interface InputResizeKernel {
  readonly spec: KernelSpec;
  launch(shape: InputResizeShape, limits: LaunchLimits): KernelLaunch;
}

/**
 * The pixels the GPU stage reads for one image: decoded pixels for `bilinear`; for `pillow-bilinear`,
 * Pillow's resize to R x R and centre crop to S x S, done here on the CPU.
 *
 * @param image Decoded RGBA8 pixels.
 * @param p The preprocessing.
 * @returns The image to upload.
 */
export function cpuPreprocess(image: DecodedImage, p: Preprocessing): DecodedImage {
  if (p.resize !== "pillow-bilinear") return image;
  // Already the crop's size: the CPU part was done before (a decode worker, or an earlier call).
  if (image.preprocessed === p.size) return image;
  const out = pillowResizeCrop(image, p.resizeTo!, p.size);
  return { format: image.format, width: out.width, height: out.height, rgba: out.rgba, preprocessed: p.size };
}

interface Slot {
  pixels: GPUBuffer;
  uniforms: GPUBuffer;
  bindGroup: GPUBindGroup;
  words: number;
}

/** Writes images into a plan's input tensor; made once per plan. */
export class InputStage {
  #device: GPUDevice;
  #kernel: InputResizeKernel;
  #pipeline: GPUComputePipeline;
  #target: GPUBuffer;
  #pre: Preprocessing;
  #slots: Slot[] = [];

  /**
   * @param device The device.
   * @param kernel The resize kernel and its pipeline.
   * @param target The model input tensor's buffer, f32 NHWC [N, S, S, 4].
   * @param pre The preprocessing.
   */
  constructor(
    device: GPUDevice,
    kernel: { kernel: InputResizeKernel; pipeline: GPUComputePipeline },
    target: GPUBuffer,
    pre: Preprocessing,
  ) {
    checkPreprocessing(pre);
    this.#device = device;
    this.#kernel = kernel.kernel;
    this.#pipeline = kernel.pipeline;
    this.#target = target;
    this.#pre = pre;
  }

  /**
   * Preprocesses and uploads the images (at most the plan's batch) and returns a function that encodes
   * their resize dispatches.
   */
  write(images: readonly DecodedImage[], batch: number): (encoder: GPUCommandEncoder) => void {
    const device = this.#device;
    const pre = this.#pre;
    const ready = images.map((image) => cpuPreprocess(image, pre));
    const launches = ready.map((image, n) =>
      this.#kernel.launch(
        {
          srcWidth: image.width,
          srcHeight: image.height,
          size: pre.size,
          n,
          batch,
          scale: pre.scale,
          offset: pre.offset,
        },
        device.limits,
      )
    );
    ready.forEach((image, n) => {
      const words = image.width * image.height;
      let slot = this.#slots[n];
      if (!slot || slot.words < words) {
        slot?.pixels.destroy();
        slot?.uniforms.destroy();
        const pixels = device.createBuffer({
          label: `input/slot${n}/pixels`,
          size: words * 4,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
        });
        const uniforms = device.createBuffer({
          label: `input/slot${n}/uniforms`,
          size: launches[n].uniforms.byteLength,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        });
        const bindGroup = device.createBindGroup({
          label: `input/slot${n}/${this.#kernel.spec.name}`,
          layout: this.#pipeline.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: pixels } },
            { binding: 1, resource: { buffer: this.#target } },
            { binding: 2, resource: { buffer: uniforms } },
          ],
        });
        slot = this.#slots[n] = { pixels, uniforms, bindGroup, words };
      }
      device.queue.writeBuffer(slot.pixels, 0, packPixels(image));
      device.queue.writeBuffer(slot.uniforms, 0, launches[n].uniforms);
    });
    return (encoder: GPUCommandEncoder) => {
      const pass = encoder.beginComputePass({ label: `input/${this.#kernel.spec.name}` });
      pass.setPipeline(this.#pipeline);
      launches.forEach((launch, n) => {
        pass.setBindGroup(0, this.#slots[n].bindGroup);
        pass.dispatchWorkgroups(...launch.workgroups);
      });
      pass.end();
    };
  }

  /** Frees the slots' buffers. */
  dispose(): void {
    for (const s of this.#slots) {
      s.pixels.destroy();
      s.uniforms.destroy();
    }
    this.#slots = [];
  }
}
