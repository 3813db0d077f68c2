import assert from "node:assert/strict";
import { fetchGcsObject, gcsMediaUrl } from "./serve_gcs.ts";
import { fakeGcs } from "../tests/_serve.ts";

const TOKEN = "ya29.test-token";
const JPEG = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4]);

async function withGcs(fn: (endpoint: string, gcs: Awaited<ReturnType<typeof fakeGcs>>) => Promise<void>) {
  const gcs = await fakeGcs(
    new Map([["derm-test/isic/a b+c.jpg", JPEG], ["derm-test/public/p.jpg", JPEG], [
      "derm-test/big.jpg",
      new Uint8Array(5000),
    ], [
      "derm-test/chunked/big.jpg",
      new Uint8Array(5000),
    ]]),
    TOKEN,
  );
  try {
    await fn(gcs.endpoint, gcs);
  } finally {
    await gcs.close();
  }
}

Deno.test("gcsMediaUrl() percent-encodes the object name, slashes included", () => {
  assert.equal(
    gcsMediaUrl("https://storage.googleapis.com/", "b", "a/b c+d.png"),
    "https://storage.googleapis.com/storage/v1/b/b/o/a%2Fb%20c%2Bd.png?alt=media",
  );
});

Deno.test("fetchGcsObject() downloads alt=media with the bearer token", async () => {
  await withGcs(async (endpoint, gcs) => {
    const bytes = await fetchGcsObject(
      { uri: "gs://derm-test/isic/a b+c.jpg", bucket: "derm-test", object: "isic/a b+c.jpg", token: TOKEN },
      { endpoint },
    );
    assert.deepEqual(bytes, JPEG);
    assert.deepEqual(gcs.requests, [
      { bucket: "derm-test", object: "isic/a b+c.jpg", alt: "media", authorization: `Bearer ${TOKEN}` },
    ]);
    // No token: no Authorization header (public objects).
    assert.deepEqual(
      await fetchGcsObject({
        uri: "gs://derm-test/public/p.jpg",
        bucket: "derm-test",
        object: "public/p.jpg",
      }, { endpoint }),
      JPEG,
    );
    assert.equal(gcs.requests[1].authorization, null);
  });
});

Deno.test("fetchGcsObject() names the URI and status for 404, 403 and 401, never the token", async () => {
  await withGcs(async (endpoint) => {
    const at = (object: string, token?: string) =>
      fetchGcsObject({ uri: `gs://derm-test/${object}`, bucket: "derm-test", object, token }, { endpoint });
    await assert.rejects(
      at("missing.jpg", TOKEN),
      (e: Error) =>
        e.message ===
          `Cannot read "gs://derm-test/missing.jpg": expected HTTP 200, got 404 (no such object: No such object: derm-test/missing.jpg)`,
    );
    await assert.rejects(at("isic/a b+c.jpg", "wrong-token"), (e: Error) => {
      assert.match(
        e.message,
        /^Cannot read "gs:\/\/derm-test\/isic\/a b\+c\.jpg": expected HTTP 200, got 403 \(access denied with this bearer_token/,
      );
      assert.ok(!e.message.includes("wrong-token"));
      return true;
    });
    await assert.rejects(
      at("isic/a b+c.jpg"),
      /got 401 \(access denied without a bearer_token: Anonymous caller/,
    );
    // With the instance that asked: named first.
    await assert.rejects(
      fetchGcsObject({
        uri: "gs://derm-test/none.jpg",
        bucket: "derm-test",
        object: "none.jpg",
        token: TOKEN,
      }, {
        endpoint,
        label: "instances[7]",
      }),
      /^Error: Cannot read "instances\[7\]" from "gs:\/\/derm-test\/none\.jpg": expected HTTP 200, got 404/,
    );
  });
});

Deno.test("fetchGcsObject() refuses objects over the size limit and unreachable endpoints", async () => {
  await withGcs(async (endpoint) => {
    await assert.rejects(
      fetchGcsObject(
        { uri: "gs://derm-test/big.jpg", bucket: "derm-test", object: "big.jpg", token: TOKEN },
        { endpoint, maxBytes: 4999 },
      ),
      /^Error: Cannot read "gs:\/\/derm-test\/big\.jpg": expected at most 4999 bytes, got 5000$/,
    );
    const ok = await fetchGcsObject(
      { uri: "gs://derm-test/big.jpg", bucket: "derm-test", object: "big.jpg", token: TOKEN },
      { endpoint, maxBytes: 5000 },
    );
    assert.equal(ok.length, 5000);
    const chunked = {
      uri: "gs://derm-test/chunked/big.jpg",
      bucket: "derm-test",
      object: "chunked/big.jpg",
      token: TOKEN,
    };
    await assert.rejects(
      fetchGcsObject(chunked, { endpoint, maxBytes: 4999 }),
      /^Error: Cannot read "gs:\/\/derm-test\/chunked\/big\.jpg": expected at most 4999 bytes, got more$/,
    );
    assert.equal((await fetchGcsObject(chunked, { endpoint, maxBytes: 5000 })).length, 5000);
  });
  // A port nobody listens on.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  await assert.rejects(
    fetchGcsObject({ uri: "gs://derm-test/x.jpg", bucket: "derm-test", object: "x.jpg" }, {
      endpoint: `http://127.0.0.1:${port}`,
    }),
    new RegExp(
      `^Error: Cannot read "gs://derm-test/x\\.jpg": cannot reach http://127\\.0\\.0\\.1:${port} \\(`,
    ),
  );
});

Deno.test("fetchGcsObject() rejects with the signal's reason when aborted", async () => {
  await withGcs(async (endpoint) => {
    const reason = new Error("deadline");
    await assert.rejects(
      fetchGcsObject(
        { uri: "gs://derm-test/public/p.jpg", bucket: "derm-test", object: "public/p.jpg" },
        { endpoint, signal: AbortSignal.abort(reason) },
      ),
      (e) => e === reason,
    );
  });
});
