/**
 * Error classes that callers catch and read fields from. Everything else uses the built-in classes:
 * `TypeError` for a bad shape, dtype or argument, `RangeError` for a limit or out-of-range value,
 * `SyntaxError` for a malformed header.
 *
 * This module is browser compatible.
 * @module
 */

/** No WebGPU adapter could be obtained (no `navigator.gpu`, or `requestAdapter()` returned null). */
export class WebGpuUnavailableError extends Error {
  /** Creates the error; `message` says what was tried. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WebGpuUnavailableError";
  }
}

/** The GPU device was lost; pending and later runs on it fail with this error. */
export class DeviceLostError extends Error {
  /** The `GPUDeviceLostReason` ("destroyed" or "unknown"). */
  readonly reason: string;
  /** Creates the error from the device's loss reason and message. */
  constructor(reason: string, message: string) {
    super(message);
    this.name = "DeviceLostError";
    this.reason = reason;
  }
}

/** A GPU validation or out-of-memory error, with the plan step (`stage3.unit07.conv2/conv2d_tiled`) that raised it. */
export class GpuError extends Error {
  /** The labelled step or phase whose GPU call failed. */
  readonly layer: string;
  /** Creates the error for the step `layer`. */
  constructor(layer: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GpuError";
    this.layer = layer;
  }
}

/** A weights file or tensor is missing, malformed or does not fit the model. */
export class WeightsError extends Error {
  /** The file (path, URL or "<bytes>") being read. */
  readonly file: string;
  /** The tensor concerned, or "" when the problem is the whole file. */
  readonly tensor: string;
  /** Creates the error for `file` (and `tensor`, when one is concerned). */
  constructor(file: string, tensor: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WeightsError";
    this.file = file;
    this.tensor = tensor;
  }
}

/** An image could not be decoded or is not usable as model input. */
export class ImageError extends Error {
  /** The image's path or label. */
  readonly file: string;
  /** Creates the error for `file`. */
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ImageError";
    this.file = file;
  }
}

/** A forward pass produced a non-finite value. */
export class NonFiniteError extends Error {
  /** Index of the image in its batch. */
  readonly image: number;
  /** First layer whose output held a NaN or infinity, when it was located ("" otherwise). */
  readonly layer: string;
  /** Creates the error for image `image` (and `layer` when known). */
  constructor(image: number, layer: string, message: string) {
    super(message);
    this.name = "NonFiniteError";
    this.image = image;
    this.layer = layer;
  }
}
