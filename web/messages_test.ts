import assert from "node:assert/strict";
import { explainError, WEBGPU_HINT } from "./messages.ts";
import { serializeError } from "./protocol.ts";
import {
  DeviceLostError,
  GpuError,
  ImageError,
  WebGpuUnavailableError,
  WeightsError,
} from "../engine/errors.ts";

const explain = (e: Error, context = {}) => explainError(serializeError(e), context);

Deno.test("explainError() says how to enable WebGPU when there is no adapter", () => {
  const e = explain(
    new WebGpuUnavailableError("Cannot find a WebGPU adapter: requestAdapter() returned null"),
  );
  assert.equal(e.kind, "no-webgpu");
  assert.equal(e.hint, WEBGPU_HINT);
  assert.match(e.hint, /--enable-unsafe-webgpu/);
  assert.match(e.detail, /requestAdapter\(\) returned null/);
});

Deno.test("explainError() names the limit when the adapter's limits are too small", () => {
  const e = explain(
    new RangeError(
      "Cannot run size 6000: the largest activation needs 1152000000 bytes, over maxStorageBufferBindingSize 1073741824",
    ),
    { weights: "procedural:tiny-bit", size: 6000 },
  );
  assert.equal(e.kind, "limits");
  assert.match(
    e.hint,
    /"procedural:tiny-bit" at size 6000 needs more than the adapter's maxStorageBufferBindingSize/,
  );
  assert.match(e.hint, /Try a smaller &size=, or/);
  const batch = explain(
    new RangeError(
      "Cannot use batch 3: at size 4096 one image's largest activation is 536870912 bytes and " +
        "maxStorageBufferBindingSize is 1073741824, so at most 2 fit",
    ),
  );
  assert.equal(batch.kind, "limits");
  assert.match(batch.hint, /Try a smaller &batch= or &size=/);
  // A RangeError that names no limit is not a limits problem.
  assert.equal(
    explain(new RangeError("Cannot preprocess: expected an input size from 1 to 16384, got 0")).kind,
    "other",
  );
});

Deno.test("explainError() tells out of GPU memory from a lost device", () => {
  const oom = explain(
    new GpuError("load weights/stem", 'out of GPU memory in "load weights/stem": Not enough memory'),
  );
  assert.equal(oom.kind, "gpu-memory");
  assert.match(oom.hint, /smaller &size=/);
  const lost = explain(new DeviceLostError("unknown", "GPU device lost: the GPU process crashed"));
  assert.equal(lost.kind, "device-lost");
  assert.match(lost.hint, /Reload/);
});

Deno.test("explainError() says a file is not an image, or is a broken one", () => {
  const notImage = explain(
    new ImageError(
      "notes.txt",
      'Cannot decode "notes.txt": unsupported format: expected PNG or JPEG, got first bytes [68]',
    ),
  );
  assert.equal(notImage.kind, "not-image");
  assert.equal(notImage.title, "notes.txt is not a PNG or JPEG image");
  const broken = explain(new ImageError("a.jpg", 'Cannot decode "a.jpg": truncated JPEG data'));
  assert.equal(broken.kind, "not-image");
  assert.equal(broken.title, "a.jpg cannot be decoded");
});

Deno.test("explainError() names the weights file for a weights problem", () => {
  const e = explain(
    new WeightsError("https://h/m.safetensors", "", 'Cannot read "https://h/m.safetensors": bad'),
  );
  assert.equal(e.kind, "weights");
  assert.equal(e.title, "Cannot load the weights from https://h/m.safetensors");
});
