import assert from "node:assert/strict";
import { decodeImage } from "../engine/image_decode.ts";
import { runKernelOnce } from "./_harness.ts";
import {
  type ChannelScaling,
  packPixels,
  resizeBilinear,
  resizeBilinearLaunch,
  type ResizeBilinearShape,
  resizeBilinearUniforms,
} from "./resize_bilinear.ts";
import { resizeBilinearRef } from "./resize_bilinear_ref.ts";
import { gpuTest } from "../tests/_gpu.ts";
import { assertClose } from "../tests/_compare.ts";
import { randomFloats } from "../tests/_random.ts";
import { readTestdata, readTestdataJson } from "../tests/_testdata.ts";

/** Random RGBA8 pixels packed as u32 (byte 3 random too: the kernel must ignore it). */
function randomPixels(w: number, h: number, seed: number): Uint32Array<ArrayBuffer> {
  const bytes = Uint8Array.from(randomFloats(w * h * 4, seed, 0, 256), Math.floor);
  return packPixels({ width: w, height: h, rgba: bytes });
}

/** The two BiT scalings (Derm Foundation's x * float32(1/255), timm's x / 127.5 - 1) and an ImageNet-like one. */
const SCALINGS: Record<string, { scale: ChannelScaling; offset: ChannelScaling }> = {
  derm: { scale: [Math.fround(1 / 255), Math.fround(1 / 255), Math.fround(1 / 255)], offset: [0, 0, 0] },
  bit: { scale: [1 / 127.5, 1 / 127.5, 1 / 127.5], offset: [-1, -1, -1] },
  imagenet: {
    scale: [1 / (255 * 0.229), 1 / (255 * 0.224), 1 / (255 * 0.225)],
    offset: [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225],
  },
};

function shape(p: Partial<ResizeBilinearShape>): ResizeBilinearShape {
  return { srcWidth: 7, srcHeight: 5, size: 9, n: 0, batch: 1, ...SCALINGS.derm, ...p };
}

// ---------- pure tests: reference, uniforms, launch, packing ----------

Deno.test("resizeBilinearRef() returns the pixels when S equals H and W", () => {
  const px = new Uint32Array([0x00332211, 0xff665544, 0x10998877, 0x00ccbbaa]);
  const y = resizeBilinearRef(px, { srcWidth: 2, srcHeight: 2, size: 2, ...SCALINGS.bit });
  const want = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc];
  assert.deepEqual([...y].filter((_, i) => i % 4 !== 3), want.map((p) => p / 127.5 - 1));
  assert.deepEqual([...y].filter((_, i) => i % 4 === 3), [0, 0, 0, 0]);
});

Deno.test("resizeBilinearRef() averages the four pixels when 2x2 goes to 1x1, and clamps at the edges", () => {
  // 2x2 -> 1x1: in = 0.5 * 2 - 0.5 = 0.5 along both axes, weights 1/2.
  const px = new Uint32Array([10, 20, 30, 60]);
  assert.equal(
    resizeBilinearRef(px, { srcWidth: 2, srcHeight: 2, size: 1, ...SCALINGS.derm })[0],
    30 * SCALINGS.derm.scale[0],
  );
  // 1x2 -> 4x4 along y: in_y = (oy + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> 10, 12.5, 17.5, 20
  const col = resizeBilinearRef(new Uint32Array([10, 20]), {
    srcWidth: 1,
    srcHeight: 2,
    size: 4,
    scale: [1, 1, 1],
    offset: [0, 0, 0],
  });
  assert.deepEqual([0, 1, 2, 3].map((oy) => col[oy * 16]), [10, 12.5, 17.5, 20]);
});

Deno.test("resizeBilinearUniforms() packs {src_w,src_h,size,n: u32; ratio_y,ratio_x, scale rgb, offset rgb: f32}", () => {
  const bytes = resizeBilinearUniforms(
    shape({
      srcWidth: 250,
      srcHeight: 200,
      size: 96,
      n: 2,
      batch: 3,
      scale: [1, 2, 3],
      offset: [-1, -2, -0.5],
    }),
  );
  assert.equal(bytes.byteLength, 48);
  const v = new DataView(bytes.buffer);
  assert.deepEqual([0, 4, 8, 12].map((o) => v.getUint32(o, true)), [250, 200, 96, 2]);
  assert.deepEqual(
    [16, 20, 24, 28, 32, 36, 40, 44].map((o) => v.getFloat32(o, true)),
    [Math.fround(200 / 96), Math.fround(250 / 96), 1, 2, 3, -1, -2, -0.5],
  );
});

Deno.test("resizeBilinearLaunch() returns the dispatch and refuses bad shapes", () => {
  const l = resizeBilinearLaunch(shape({ srcWidth: 250, srcHeight: 250, size: 448, n: 1, batch: 2 }));
  assert.deepEqual(l.workgroups, [3136, 1, 1]);
  assert.deepEqual(l.outputShape, [2, 448, 448, 4]);
  assert.equal(l.pixelWords, 62500);
  assert.deepEqual(resizeBilinearLaunch(shape({ size: 9 })).workgroups, [2, 1, 1]); // 81 = 64 + tail 17
  assert.throws(() => resizeBilinearLaunch(shape({ n: 1, batch: 1 })), RangeError);
  assert.throws(() => resizeBilinearLaunch(shape({ srcWidth: 0 })), RangeError);
  assert.throws(() => resizeBilinearLaunch(shape({ size: 2.5 })), RangeError);
  assert.throws(() => resizeBilinearLaunch(shape({ scale: [1, 2] as unknown as ChannelScaling })), TypeError);
  assert.throws(() => resizeBilinearLaunch(shape({ offset: [0, NaN, 0] })), TypeError);
  assert.throws(
    () => resizeBilinearLaunch(shape({ size: 448 }), { maxComputeWorkgroupsPerDimension: 10 }),
    RangeError,
  );
});

Deno.test("packPixels() puts R in the low byte, with or without a copy", () => {
  const rgba = new Uint8Array([1, 2, 3, 255, 4, 5, 6, 0]);
  assert.deepEqual([...packPixels({ width: 2, height: 1, rgba })], [0xff030201, 0x00060504]);
  const odd = new Uint8Array(9);
  odd.set(rgba, 1);
  assert.deepEqual([...packPixels({ width: 2, height: 1, rgba: odd.subarray(1) })], [0xff030201, 0x00060504]);
  assert.throws(() => packPixels({ width: 3, height: 1, rgba }), TypeError);
});

// ---------- kernel tests: GPU against the float64 reference ----------

const CASES: [w: number, h: number, s: number][] = [
  [7, 5, 9], // upscale, non-square source, dispatch tail
  [31, 17, 8], // downscale
  [1, 1, 5], // single pixel
  [13, 13, 13], // identity
  [250, 200, 96], // the fixtures' 320x200-like case, odd ratios
  [3, 40, 17], // tall: upscale along x, downscale along y
];

for (const preset of ["derm", "bit", "imagenet"] as const) {
  gpuTest(
    `resizeBilinear() matches reference on awkward sizes into batch slots (${preset})`,
    async ({ device }) => {
      const batch = 3;
      for (const [i, [w, h, s]] of CASES.entries()) {
        const n = i % batch;
        const px = randomPixels(w, h, 100 + i);
        const launch = resizeBilinearLaunch(
          { srcWidth: w, srcHeight: h, size: s, n, batch, ...SCALINGS[preset] },
          device.limits,
        );
        const [out] = await runKernelOnce(device, resizeBilinear, launch, [px, {
          bytes: batch * s * s * 16,
        }]);
        const got = new Float32Array(out);
        const want = new Float64Array(batch * s * s * 4);
        want.set(
          resizeBilinearRef(px, { srcWidth: w, srcHeight: h, size: s, ...SCALINGS[preset] }),
          n * s * s * 4,
        );
        // Like TF, the kernel computes the source coordinate in float32: it is off by up to ~2 ulp(max(H,W)),
        // which moves the result by that times the step between neighbours (at most the value range, 1 for
        // derm, 2 for bit), plus a few ulp(1) from the lerps.
        const range = preset === "derm" ? 1 : preset === "bit" ? 2 : 4.7; // imagenet: about [-2.1, 2.6]
        const abs = 1e-6 + range * 2 * Math.max(w, h) * 2 ** -23;
        assertClose(got, want, { abs, rel: 0, shape: [batch, s, s, 4], what: `${w}x${h}->${s} n=${n}` });
      }
    },
  );
}

// ---------- decode + resize against the fixtures' model input ----------

/** Reads one F32 tensor from a safetensors file (8-byte LE header length, JSON header, data). */
function readSafetensor(bytes: Uint8Array, name: string): { shape: number[]; data: Float32Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const t = header[name];
  assert.ok(t, `no tensor "${name}"`);
  assert.equal(t.dtype, "F32");
  const [begin, end] = t.data_offsets as [number, number];
  const data = bytes.slice(8 + headerLength + begin, 8 + headerLength + end);
  return { shape: t.shape, data: new Float32Array(data.buffer) };
}

interface FixtureCase {
  name: string;
  preset: "derm" | "bit";
  image: string;
  size: number;
}

function readCases(): FixtureCase[] {
  return readTestdataJson<FixtureCase[]>("bit/cases.json");
}

gpuTest(
  "decodeImage() + resizeBilinear() reproduce the fixtures' model input for every case",
  async ({ device }) => {
    const cases = readCases();
    const report: string[] = [];
    const failures: string[] = [];
    for (const c of cases) {
      const image = await decodeImage(readTestdata(c.image.replace(/^\.\.\//, "")), c.image);
      const ref = readSafetensor(readTestdata(`bit/${c.name}.ref.safetensors`), "input");
      assert.deepEqual(ref.shape, [c.size, c.size, 3]);
      const launch = resizeBilinearLaunch(
        {
          srcWidth: image.width,
          srcHeight: image.height,
          size: c.size,
          n: 0,
          batch: 1,
          ...SCALINGS[c.preset],
        },
        device.limits,
      );
      const [out] = await runKernelOnce(device, resizeBilinear, launch, [packPixels(image), {
        bytes: c.size * c.size * 16,
      }]);
      const got = new Float32Array(out);
      let max = 0, alpha = 0;
      for (let i = 0; i < c.size * c.size; i++) {
        for (let ch = 0; ch < 3; ch++) max = Math.max(max, Math.abs(got[i * 4 + ch] - ref.data[i * 3 + ch]));
        alpha = Math.max(alpha, Math.abs(got[i * 4 + 3]));
      }
      report.push(
        `${c.name} (${image.format} ${image.width}x${image.height} -> ${c.size}): max abs diff ${
          max.toExponential(2)
        }`,
      );
      // PNG decodes exactly; what is left is TF's float32 coordinate rounding against the fixtures' float64
      // (up to 2e-6 on these natural images). JPEG depends on the decoder (imagescript vs libjpeg-turbo:
      // up to 3 levels per pixel, see bench/jpeg_notes.md).
      const bound = image.format === "png" ? 4e-6 : 4 / 255;
      if (!(max <= bound) || alpha !== 0) {
        failures.push(
          `${c.name}: max abs diff ${max} > ${bound} or channel 3 ${alpha}`,
        );
      }
    }
    console.log(report.join("\n"));
    assert.deepEqual(failures, []);
  },
);
