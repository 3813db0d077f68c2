/**
 * `fetch-model` against a local stand-in for the Hugging Face hub on 127.0.0.1: the model API, `resolve`
 * URLs answering 302 to a "CDN" path on the same server, Range requests, dropped connections, gated repos.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { downloadFile, HubError, listModelFiles } from "./hub.ts";
import { chooseModelFiles, fetchModel, resolveModel } from "./model_cache.ts";
import { EXIT_GATED, EXIT_NOT_FOUND, main } from "./fetch_model.ts";
import { ProgressBar } from "./progress.ts";
import { fixtureWeightsFile } from "../tests/_fixtures.ts";
import { rejectsWith } from "../tests/_assert.ts";

const TOKEN = "hf_test_secret_token";

interface RepoFile {
  content: Uint8Array;
  /** Listed as an LFS file with this SHA-256 (default: the content's); `blob` lists a git SHA-1 instead. */
  sha256?: string;
  blob?: boolean;
}

interface Repo {
  files: Record<string, RepoFile>;
  gated?: boolean;
}

interface Hub {
  endpoint: string;
  requests: { path: string; range: string | null; auth: string | null }[];
  /** Paths whose next CDN response stops after this many bytes (then the connection is dropped). */
  dropAfter: Map<string, number>;
  close(): Promise<void>;
}

function bytesOf(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return out;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function gitBlobSha1(bytes: Uint8Array): string {
  return createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
}

function startHub(repos: Record<string, Repo>): Hub {
  const requests: Hub["requests"] = [];
  const dropAfter = new Map<string, number>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    const path = decodeURIComponent(url.pathname);
    requests.push({ path, range: req.headers.get("range"), auth: req.headers.get("authorization") });
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/main$/.exec(path);
    if (api) {
      const repo = repos[api[1]];
      if (!repo) {
        return Response.json({ error: "Repository not found" }, {
          status: 404,
          headers: { "x-error-code": "RepoNotFound" },
        });
      }
      const siblings = Object.entries(repo.files).map(([rfilename, f]) =>
        f.blob ? { rfilename, size: f.content.length, blobId: gitBlobSha1(f.content) } : {
          rfilename,
          size: f.content.length,
          blobId: "0".repeat(40),
          lfs: { sha256: f.sha256 ?? sha256(f.content), size: f.content.length },
        }
      );
      return Response.json({ id: api[1], gated: repo.gated ? "manual" : false, siblings });
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(path);
    if (resolve) {
      const repo = repos[resolve[1]];
      if (!repo) {
        return new Response("not found", { status: 404, headers: { "x-error-code": "RepoNotFound" } });
      }
      if (repo.gated && req.headers.get("authorization") !== `Bearer ${TOKEN}`) {
        const status = req.headers.get("authorization") ? 403 : 401;
        return new Response("Access to this model is restricted", {
          status,
          headers: { "x-error-code": "GatedRepo" },
        });
      }
      if (!repo.files[resolve[2]]) {
        return new Response("entry not found", { status: 404, headers: { "x-error-code": "EntryNotFound" } });
      }
      return new Response(null, { status: 302, headers: { location: `/cdn/${resolve[1]}/${resolve[2]}` } });
    }
    const cdn = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(path);
    const file = cdn ? repos[cdn[1]]?.files[cdn[2]] : undefined;
    if (!file) return new Response("no such object", { status: 404 });
    const range = /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
    const start = range ? Number(range[1]) : 0;
    const body = file.content.subarray(start);
    const headers: Record<string, string> = { "content-length": String(body.length) };
    if (range) headers["content-range"] = `bytes ${start}-${file.content.length - 1}/${file.content.length}`;
    const drop = dropAfter.get(path);
    if (drop !== undefined) {
      dropAfter.delete(path);
      // Send `drop` bytes of the `content-length` promised, then stop.
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(body.slice(0, drop));
        },
        pull(controller) {
          // Ends before Content-Length: the server closes the connection mid-file.
          controller.close();
        },
      });
      return new Response(stream, { status: range ? 206 : 200, headers });
    }
    return new Response(body.slice(), { status: range ? 206 : 200, headers });
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests,
    dropAfter,
    close: () => server.shutdown(),
  };
}

async function withHub(
  repos: Record<string, Repo>,
  fn: (hub: Hub, cache: string) => Promise<void>,
): Promise<void> {
  const hub = startHub(repos);
  const cache = await Deno.makeTempDir({ prefix: "derm-webgpu-cache-" });
  try {
    await fn(hub, cache);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

async function rejectsHub(
  promise: Promise<unknown>,
  kind: HubError["kind"],
  pattern: RegExp,
): Promise<HubError> {
  const caught = await rejectsWith(promise, HubError);
  assert.equal(caught.kind, kind, caught.message);
  assert.match(caught.message, pattern);
  return caught;
}

async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, prefix: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`, `${prefix}${e.name}/`);
      else out.push(`${prefix}${e.name}`);
    }
  };
  await walk(dir, "");
  return out.sort();
}

const TIMM_ID = "timm/resnetv2_tiny_bit.test";
const MODEL = bytesOf(300_000, 1);
const CONFIG = new TextEncoder().encode('{"architecture": "resnetv2_tiny_bit"}');
const quiet = { progress: false, retryDelayMs: 5 } as const;

Deno.test("fetchModel() downloads a timm repository's model.safetensors and config.json, then uses the cache", async () => {
  const repos = {
    [TIMM_ID]: {
      files: {
        "model.safetensors": { content: MODEL },
        "config.json": { content: CONFIG, blob: true },
        "README.md": { content: new Uint8Array(10), blob: true },
        "pytorch_model.bin": { content: new Uint8Array(10) },
      },
    },
  };
  await withHub(repos, async (hub, cache) => {
    const path = await fetchModel(TIMM_ID, { endpoint: hub.endpoint, cache, ...quiet });
    assert.equal(path, `${cache}/${TIMM_ID}/model.safetensors`);
    assert.deepEqual(await Deno.readFile(path), MODEL);
    assert.deepEqual(await listing(`${cache}/${TIMM_ID}`), ["config.json", "model.safetensors"]);
    // Resolve URLs were redirected to the CDN path.
    assert.ok(hub.requests.some((r) => r.path === `/cdn/${TIMM_ID}/model.safetensors`));
    const before = hub.requests.length;
    assert.equal(await resolveModel(TIMM_ID, { endpoint: hub.endpoint, cache, ...quiet }), path);
    assert.equal(hub.requests.length, before, "a cached model needs no request");
  });
});

Deno.test("downloadFile() resumes with a Range request after the connection drops mid-file", async () => {
  const repos = { [TIMM_ID]: { files: { "model.safetensors": { content: MODEL } } } };
  await withHub(repos, async (hub, cache) => {
    hub.dropAfter.set(`/cdn/${TIMM_ID}/model.safetensors`, 100_000);
    const lines: string[] = [];
    const path = await fetchModel(TIMM_ID, {
      endpoint: hub.endpoint,
      cache,
      retryDelayMs: 5,
      interactive: false,
      write: (t) => lines.push(t),
    });
    assert.equal(sha256(await Deno.readFile(path)), sha256(MODEL));
    const cdn = hub.requests.filter((r) => r.path.startsWith("/cdn/"));
    assert.equal(cdn.length, 2);
    assert.equal(cdn[0].range, null);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdn[1].range ?? "")?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= 100_000, `resumed at ${cdn[1].range}`);
    assert.ok(lines.some((l) => /retrying from byte/.test(l)), lines.join(""));
    assert.ok(lines.some((l) => /100% .*\/ 293\.0 KiB/.test(l)), lines.join(""));
    assert.deepEqual(await listing(`${cache}/${TIMM_ID}`), ["model.safetensors"]);
  });
});

Deno.test("downloadFile() resumes a .part left by an earlier run", async () => {
  const repos = { [TIMM_ID]: { files: { "model.safetensors": { content: MODEL } } } };
  await withHub(repos, async (hub, cache) => {
    await Deno.mkdir(`${cache}/${TIMM_ID}`, { recursive: true });
    await Deno.writeFile(`${cache}/${TIMM_ID}/model.safetensors.part`, MODEL.subarray(0, 12345));
    const path = await fetchModel(TIMM_ID, { endpoint: hub.endpoint, cache, ...quiet });
    assert.deepEqual(await Deno.readFile(path), MODEL);
    assert.equal(hub.requests.find((r) => r.path.startsWith("/cdn/"))?.range, "bytes=12345-");
  });
});

Deno.test("fetchModel() rejects a file whose SHA-256 does not match and leaves nothing behind", async () => {
  const repos = {
    [TIMM_ID]: { files: { "model.safetensors": { content: MODEL, sha256: "ab".repeat(32) } } },
  };
  await withHub(repos, async (hub, cache) => {
    await rejectsHub(
      fetchModel(TIMM_ID, { endpoint: hub.endpoint, cache, ...quiet }),
      "checksum",
      /"model.safetensors" failed its SHA-256 check: expected abab.*, got [0-9a-f]{64}; the partial file was removed/,
    );
    assert.deepEqual(await listing(cache).catch(() => []), []);
  });
});

Deno.test("fetchModel() rejects a non-LFS file whose git SHA-1 does not match", async () => {
  const repos = {
    [TIMM_ID]: {
      files: { "model.safetensors": { content: MODEL }, "config.json": { content: CONFIG, blob: true } },
    },
  };
  await withHub(repos, async (hub, cache) => {
    const files = await listModelFiles(TIMM_ID, { endpoint: hub.endpoint });
    const config = files.find((f) => f.path === "config.json")!;
    await Deno.mkdir(`${cache}/x`, { recursive: true });
    await rejectsHub(
      downloadFile(TIMM_ID, { ...config, blobId: "0".repeat(40) }, `${cache}/x/config.json`, {
        endpoint: hub.endpoint,
        ...quiet,
      }),
      "checksum",
      /git SHA-1 check/,
    );
    assert.deepEqual(await listing(`${cache}/x`), []);
  });
});

Deno.test("fetchModel() explains how to accept the terms of a gated repository, and works with HF_TOKEN", async () => {
  const id = "google/derm-foundation-test";
  const repos = {
    [id]: { gated: true, files: { "model.safetensors": { content: MODEL } } },
  };
  await withHub(repos, async (hub, cache) => {
    const e = await rejectsHub(
      fetchModel(id, { endpoint: hub.endpoint, cache, ...quiet }),
      "gated",
      new RegExp(
        `Cannot download "${id}": access denied \\(HTTP 401\\).*visit ${hub.endpoint}/${id}, log in and ` +
          "accept the terms of use, create a read token .*set HF_TOKEN",
      ),
    );
    assert.equal(e.status, 401);
    const wrong = await rejectsHub(
      fetchModel(id, { endpoint: hub.endpoint, cache, token: "hf_wrong_token", ...quiet }),
      "gated",
      /access denied with the HF_TOKEN given \(HTTP 403\)/,
    );
    assert.ok(!wrong.message.includes("hf_wrong_token"), "the token is never printed");
    const path = await fetchModel(id, { endpoint: hub.endpoint, cache, token: TOKEN, ...quiet });
    assert.deepEqual(await Deno.readFile(path), MODEL);
    assert.ok(hub.requests.some((r) => r.auth === `Bearer ${TOKEN}`));
  });
});

Deno.test("fetchModel() reports a model ID the hub does not know", async () => {
  await withHub({}, async (hub, cache) => {
    await rejectsHub(
      fetchModel("nobody/no-such-model", { endpoint: hub.endpoint, cache, ...quiet }),
      "not-found",
      /Cannot download "nobody\/no-such-model": no such model on http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\)/,
    );
  });
});

Deno.test("fetchModel() downloads a SavedModel repository and converts it once", async () => {
  const id = "google/derm-foundation-sm";
  const repos = {
    [id]: {
      files: {
        "saved_model.pb": { content: bytesOf(5000, 2) },
        "variables/variables.index": { content: bytesOf(700, 3), blob: true },
        "variables/variables.data-00000-of-00001": { content: bytesOf(90_000, 4) },
        "fingerprint.pb": { content: bytesOf(50, 5), blob: true },
        "README.md": { content: bytesOf(50, 6), blob: true },
      },
    },
  };
  await withHub(repos, async (hub, cache) => {
    const calls: unknown[][] = [];
    const convert = async (src: string, out: string, options?: unknown) => {
      calls.push([src, out, options]);
      await Deno.writeTextFile(out, "converted");
    };
    const path = await fetchModel(id, { endpoint: hub.endpoint, cache, convert, dtype: "f16", ...quiet });
    const dir = `${cache}/${id}`;
    assert.equal(path, `${dir}/model.safetensors`);
    assert.deepEqual(calls, [[dir, path, { dtype: "f16", preset: "derm" }]]);
    assert.deepEqual(await listing(dir), [
      "model.safetensors",
      "saved_model.pb",
      "variables/variables.data-00000-of-00001",
      "variables/variables.index",
    ]);
    assert.deepEqual(await Deno.readFile(`${dir}/variables/variables.index`), bytesOf(700, 3));
    await resolveModel(id, { endpoint: hub.endpoint, cache, convert, ...quiet });
    assert.equal(calls.length, 1);
  });
});

Deno.test("chooseModelFiles() refuses a repository without a model and unsafe paths", () => {
  assert.throws(
    () => chooseModelFiles("a/b", [{ path: "README.md" }]),
    /neither model.safetensors .* nor saved_model.pb/,
  );
  const chosen = chooseModelFiles("a/b", [
    { path: "saved_model.pb" },
    { path: "variables/../../etc/passwd" },
    { path: "variables/variables.index" },
  ]);
  assert.deepEqual(chosen.files.map((f) => f.path), ["saved_model.pb", "variables/variables.index"]);
});

Deno.test("fetch-model main() prints help, rejects bad arguments and maps failures to exit codes", async () => {
  await withHub({ [TIMM_ID]: { files: { "model.safetensors": { content: MODEL } } } }, async (hub, cache) => {
    const log = console.log, error = console.error;
    const out: string[] = [], err: string[] = [];
    console.log = (...a: unknown[]) => out.push(a.join(" "));
    console.error = (...a: unknown[]) => err.push(a.join(" "));
    try {
      assert.equal(await main(["--help"]), 0);
      for (const flag of ["--cache", "--endpoint", "--revision", "--dtype", "--force", "--quiet", "--help"]) {
        assert.ok(out.join("\n").includes(flag), flag);
      }
      assert.equal(await main([]), 2);
      assert.equal(await main(["not an id"]), 2);
      assert.equal(await main(["a/b", "--dtype", "f64"]), 2);
      assert.equal(
        await main(["nobody/none", "--quiet", "--cache", cache, "--endpoint", hub.endpoint]),
        EXIT_NOT_FOUND,
      );
      out.length = 0;
      assert.equal(await main([TIMM_ID, "--quiet", "--cache", cache, "--endpoint", hub.endpoint]), 0);
      assert.deepEqual(out, [`${cache}/${TIMM_ID}/model.safetensors`]);
    } finally {
      console.log = log;
      console.error = error;
    }
    assert.equal(EXIT_GATED, 4);
    assert.ok(err.some((l) => /no such model/.test(l)), err.join("\n"));
  });
});

Deno.test("ProgressBar prints a few plain lines when not on a terminal", () => {
  const lines: string[] = [];
  const bar = new ProgressBar("file.bin", { total: 1000, interactive: false, write: (t) => lines.push(t) });
  for (let done = 0; done <= 1000; done += 10) bar.update(done);
  bar.finish();
  assert.equal(lines.length, 5);
  assert.match(lines[0], /^file\.bin \[-{30}\] {3}0% 0 B \/ 1000 B/);
  assert.match(lines[4], /^file\.bin \[#{30}\] 100% 1000 B \/ 1000 B/);
});

Deno.test("embed --model ID downloads into the cache once and embeds like --weights on the same file", async () => {
  const weights = await Deno.readFile(await fixtureWeightsFile("bit/tiny-bit-64.safetensors"));
  await withHub(
    { "timm/tiny-bit": { files: { "model.safetensors": { content: weights } } } },
    async (hub, cache) => {
      const image = new URL("../samples/ISIC_0000101.jpg", import.meta.url).pathname;
      const embed = (args: string[]) =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-read",
            "--allow-write",
            "--allow-env",
            "--allow-net",
            "cli/embed.ts",
            ...args,
          ],
          cwd: new URL("../", import.meta.url).pathname,
          env: { HF_ENDPOINT: hub.endpoint, DERM_WEBGPU_CACHE: cache },
          stdout: "piped",
          stderr: "piped",
        }).output();
      for (let run = 0; run < 2; run++) {
        const r = await embed([
          "--model",
          "timm/tiny-bit",
          "--size",
          "64",
          "--quiet",
          "--out",
          `${cache}/m${run}.npy`,
          image,
        ]);
        assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
      }
      // The second run found the model in the cache: one listing and one download in all.
      assert.equal(hub.requests.filter((q) => q.path.startsWith("/cdn/")).length, 1);
      const direct = await embed([
        "--weights",
        `${cache}/timm/tiny-bit/model.safetensors`,
        "--size",
        "64",
        "--quiet",
        "--out",
        `${cache}/w.npy`,
        image,
      ]);
      assert.equal(direct.code, 0);
      const viaModel = await Deno.readFile(`${cache}/m1.npy`);
      assert.deepEqual(viaModel, await Deno.readFile(`${cache}/w.npy`));
    },
  );
});
