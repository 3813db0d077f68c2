import assert from "node:assert/strict";
import { readRequestBody } from "./serve_body.ts";
import { RequestError } from "./serve_schema.ts";

function request(body: BodyInit, headers: Record<string, string> = {}): Request {
  return new Request("http://127.0.0.1/predict", { method: "POST", body, headers });
}

function refused(status: number, message: string) {
  return (e: unknown) => e instanceof RequestError && e.status === status && e.message === message;
}

Deno.test("readRequestBody() reads a body up to the limit as UTF-8 text", async () => {
  assert.equal(
    await readRequestBody(request('{"instances": ["é"]}'), { maxBytes: 21 }),
    '{"instances": ["é"]}',
  );
  assert.equal(
    await readRequestBody(new Request("http://127.0.0.1/", { method: "POST" }), { maxBytes: 1 }),
    "",
  );
});

Deno.test("readRequestBody() refuses a body over the limit with 413, declared or counted while it arrives", async () => {
  await assert.rejects(
    readRequestBody(request("x".repeat(11), { "content-length": "11" }), { maxBytes: 10 }),
    refused(413, "Cannot accept a request body of 11 bytes: expected at most 10"),
  );
  await assert.rejects(
    readRequestBody(request("x".repeat(11)), { maxBytes: 10 }),
    refused(413, "Cannot accept a request body of more than 10 bytes"),
  );
  // No Content-Length: the stream is cancelled as soon as it passes the limit, never read to its end.
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(new Uint8Array(4).fill(65));
    },
  });
  await assert.rejects(
    readRequestBody(request(endless), { maxBytes: 10 }),
    refused(413, "Cannot accept a request body of more than 10 bytes"),
  );
  assert.ok(pulled <= 4, `${pulled} chunks pulled`);
});

Deno.test("readRequestBody() refuses a body that is not UTF-8 with 400", async () => {
  await assert.rejects(
    readRequestBody(request(new Uint8Array([0x7b, 0xff, 0x7d])), { maxBytes: 10 }),
    refused(400, "Cannot read the request body: expected UTF-8 JSON, got invalid UTF-8"),
  );
});
