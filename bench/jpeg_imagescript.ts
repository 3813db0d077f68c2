/**
 * imagescript 1.3.1's Rust `jpeg.wasm` as a {@linkcode JpegDecoder}, for `bench/jpeg_fidelity.ts` only: it is
 * within 3 levels of libjpeg-turbo, not bit-identical (bench/jpeg_notes.md), so the engine does not use it.
 * imagescript's main module loads a native Node addon at import time, so its wasm is instantiated here.
 * @module
 */
import type { RawPixels } from "../engine/image_decode.ts";

interface ImagescriptJpegExports {
  memory: WebAssembly.Memory;
  walloc(size: number): number;
  wlen(): number;
  decode(ptr: number, len: number, width: number, height: number): number;
  decode_width(ptr: number): number;
  decode_height(ptr: number): number;
  decode_format(ptr: number): number;
  decode_buffer(ptr: number): number;
  decode_free(ptr: number): void;
}

let jpegModule: Promise<WebAssembly.Module> | undefined;

async function loadImagescriptJpeg(): Promise<WebAssembly.Module> {
  // Resolved through the import map ("imagescript" -> npm:imagescript@1.3.1): a file: URL in Deno (read
  // from the local npm cache, needs --allow-read, never the network), a bundler-served URL in a browser.
  const url = import.meta.resolve("imagescript/wasm/any/jpeg.wasm");
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  return await WebAssembly.compile(await response.arrayBuffer());
}

/**
 * An alternative {@linkcode JpegDecoder}: imagescript 1.3.1's Rust `jpeg.wasm`. Not bit-identical to
 * libjpeg-turbo (see `bench/jpeg_notes.md`). A fresh wasm instance per call keeps memory bounded.
 *
 * @param bytes A JPEG file.
 * @returns Grey (1 byte per pixel) or RGB (3) pixels.
 */
export async function imagescriptJpegDecoder(bytes: Uint8Array): Promise<RawPixels> {
  jpegModule ??= loadImagescriptJpeg();
  let module: WebAssembly.Module;
  try {
    module = await jpegModule;
  } catch (e) {
    jpegModule = undefined;
    throw e;
  }
  const wasm = (await WebAssembly.instantiate(module, {})).exports as unknown as ImagescriptJpegExports;
  const input = wasm.walloc(bytes.length);
  new Uint8Array(wasm.memory.buffer, input, bytes.length).set(bytes);
  // The decoder takes ownership of the input buffer; 0 means a decode error, 1 a scaling error.
  const frame = wasm.decode(input, bytes.length, 0, 0);
  if (frame === 0 || frame === 1) throw new Error("jpeg.wasm failed to decode");
  const width = wasm.decode_width(frame);
  const height = wasm.decode_height(frame);
  const format = wasm.decode_format(frame); // 0 grey, 1 RGB, 2 CMYK
  const pointer = wasm.decode_buffer(frame); // sets wlen() to the buffer's length
  const data = new Uint8Array(wasm.memory.buffer, pointer, wasm.wlen()).slice();
  wasm.decode_free(frame);
  if (format !== 0 && format !== 1) throw new Error(`jpeg.wasm returned pixel format ${format} (CMYK)`);
  return { width, height, data, channels: format === 0 ? 1 : 3 };
}
