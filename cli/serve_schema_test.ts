import assert from "node:assert/strict";
import {
  errorJson,
  type Instance,
  parseGcsUri,
  parseInstance,
  parsePredictRequest,
  predictResponseJson,
  RequestError,
} from "./serve_schema.ts";

const MAX = { maxInstances: 4 };

function requestError(text: string, status: number, message: RegExp) {
  assert.throws(
    () => parsePredictRequest(text, MAX),
    (e: Error) => e instanceof RequestError && e.status === status && message.test(e.message),
    `${text} -> ${status} ${message}`,
  );
}

function invalid(value: unknown): string {
  const got = parseInstance(value, 2);
  assert.equal(got.kind, "invalid", JSON.stringify(value));
  return (got as Extract<Instance, { kind: "invalid" }>).description;
}

Deno.test("parsePredictRequest() reads input_bytes and gcs_uri instances in order", () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
  const got = parsePredictRequest(
    JSON.stringify({
      instances: [
        { input_bytes: png.toBase64() },
        { gcs_uri: "gs://derm-bucket/a/b c.png", bearer_token: "tok" },
        { gcs_uri: "gs://derm-bucket/x.jpg", extensions: { key: "k", value: {} } },
      ],
      parameters: {},
    }),
    MAX,
  );
  assert.deepEqual(got, [
    { kind: "bytes", bytes: png },
    {
      kind: "gcs",
      uri: "gs://derm-bucket/a/b c.png",
      bucket: "derm-bucket",
      object: "a/b c.png",
      token: "tok",
    },
    { kind: "gcs", uri: "gs://derm-bucket/x.jpg", bucket: "derm-bucket", object: "x.jpg", token: undefined },
  ]);
});

Deno.test("parsePredictRequest() refuses malformed JSON and bodies without instances with 400", () => {
  requestError("{", 400, /^Cannot parse the request body: expected JSON, got /);
  requestError("", 400, /^Cannot parse the request body: expected JSON/);
  requestError(
    "[1]",
    400,
    /^Cannot read the request: expected an object with "instances", got an array of 1$/,
  );
  requestError("null", 400, /expected an object with "instances", got null/);
  requestError("{}", 400, /^Cannot read the request: expected "instances" to be an array, got nothing$/);
  requestError(
    '{"instances": {"input_bytes": ""}}',
    400,
    /expected "instances" to be an array, got \{"input_bytes":""\}/,
  );
  requestError('{"instances": []}', 400, /^Cannot read the request: expected at least 1 instance, got 0$/);
});

Deno.test("parsePredictRequest() refuses more instances than allowed with 413", () => {
  const five = JSON.stringify({ instances: Array(5).fill({ input_bytes: "" }) });
  requestError(five, 413, /^Cannot accept 5 instances: expected at most 4 per request$/);
  assert.equal(
    parsePredictRequest(JSON.stringify({ instances: Array(4).fill({ input_bytes: "" }) }), MAX).length,
    4,
  );
});

Deno.test("parseInstance() gives a bad instance its own error naming it", () => {
  assert.equal(
    invalid(7),
    `Cannot read "instances[2]": expected an object with "input_bytes" or "gcs_uri", got 7`,
  );
  assert.equal(
    invalid([]),
    `Cannot read "instances[2]": expected an object with "input_bytes" or "gcs_uri", got an array of 0`,
  );
  assert.equal(
    invalid({ input_bytes: "", gcs_uri: "gs://b/o" }),
    `Cannot read "instances[2]": expected one of "input_bytes" and "gcs_uri", got both`,
  );
  assert.equal(invalid({}), `Cannot read "instances[2]": expected "input_bytes" or "gcs_uri", got neither`);
  assert.equal(
    invalid({ input_byte: "" }),
    `Cannot read "instances[2]": expected only the keys input_bytes, gcs_uri, bearer_token, extensions, got "input_byte"`,
  );
  assert.equal(
    invalid({ input_bytes: 12 }),
    `Cannot read "instances[2]": expected "input_bytes" to be a base64 string, got 12`,
  );
  assert.match(
    invalid({ input_bytes: "not base64!" }),
    /^Cannot decode "instances\[2\]": expected base64 in "input_bytes", got /,
  );
  assert.equal(
    invalid({ gcs_uri: "https://storage.googleapis.com/b/o" }),
    `Cannot read "instances[2]": expected "gcs_uri" as gs://BUCKET/OBJECT, got "https://storage.googleapis.com/b/o"`,
  );
  assert.match(invalid({ gcs_uri: 5 }), /expected "gcs_uri" to be a string gs:\/\/BUCKET\/OBJECT, got 5/);
  assert.match(
    invalid({ gcs_uri: "gs://b/o", bearer_token: 1 }),
    /expected "bearer_token" to be a string, got 1/,
  );
});

Deno.test("parseInstance() decodes base64 with or without padding and with line breaks", () => {
  const bytes = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x00]);
  for (
    const text of [
      bytes.toBase64(),
      bytes.toBase64().replace(/=+$/, ""),
      bytes.toBase64().replace(/(.{4})/g, "$1\n"),
    ]
  ) {
    const got = parseInstance({ input_bytes: text }, 0);
    assert.deepEqual(got, { kind: "bytes", bytes }, JSON.stringify(text));
  }
});

Deno.test("parseGcsUri() splits bucket and object and refuses other URIs", () => {
  assert.deepEqual(parseGcsUri("gs://derm/isic/ISIC_1.jpg"), { bucket: "derm", object: "isic/ISIC_1.jpg" });
  for (const bad of ["gs://derm", "gs://derm/", "gs:///o", "s3://derm/o", "gs://Derm/o", "gs://a/o"]) {
    assert.throws(
      () => parseGcsUri(bad),
      (e: Error) => e instanceof TypeError && e.message.includes(bad),
      bad,
    );
  }
});

Deno.test("predictResponseJson() writes each float32 exactly and errors as they are, in order", () => {
  const row = Float32Array.of(0.1, -1 / 3, 3.4028234663852886e38, 1.401298464324817e-45, 0);
  const body = JSON.parse(predictResponseJson([
    { embedding: row },
    { error: { description: 'Cannot decode "instances[1]": bad' } },
    { embedding: row, scores: { benign: 0.25, malignant: 0.75 } },
  ]));
  assert.equal(body.predictions.length, 3);
  assert.deepEqual(Float32Array.from(body.predictions[0].embedding), row);
  assert.deepEqual(body.predictions[1], { error: { description: 'Cannot decode "instances[1]": bad' } });
  assert.deepEqual(body.predictions[2].scores, { benign: 0.25, malignant: 0.75 });
  assert.deepEqual(JSON.parse(errorJson("x")), { error: { description: "x" } });
});
