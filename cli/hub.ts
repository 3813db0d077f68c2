/**
 * A minimal Hugging Face hub client: list a model's files with their sizes and checksums, and download one
 * file with resume (HTTP Range into `NAME.part`), size and checksum checks, and gated-repository messages.
 *
 * API used: `GET {endpoint}/api/models/{id}/revision/{revision}?blobs=true` (siblings with `rfilename`, `size`,
 * `blobId` = git blob SHA-1, and `lfs: { sha256, size }` for LFS files); files from
 * `{endpoint}/{id}/resolve/{revision}/{path}`, which redirects to a CDN. The token goes in
 * `Authorization: Bearer` and is never printed.
 * @module
 */
import { createHash } from "node:crypto";
import { ProgressBar } from "./progress.ts";

/** Default hub endpoint (`HF_ENDPOINT` overrides it). */
export const DEFAULT_HF_ENDPOINT = "https://huggingface.co";

/** Why a hub request failed, for callers that react differently (exit codes, retries). */
export type HubErrorKind = "not-found" | "gated" | "http" | "network" | "checksum";

/** A hub request failed; the message says what to do. */
export class HubError extends Error {
  /** The model ID. */
  readonly id: string;
  /** The kind of failure. */
  readonly kind: HubErrorKind;
  /** HTTP status, when there was a response (0 otherwise). */
  readonly status: number;
  /** Creates the error. */
  constructor(id: string, kind: HubErrorKind, status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HubError";
    this.id = id;
    this.kind = kind;
    this.status = status;
  }
}

/** Connection settings. */
export interface HubOptions {
  /** Hub endpoint (default {@linkcode DEFAULT_HF_ENDPOINT}). */
  endpoint?: string;
  /** Access token for gated or private repositories. */
  token?: string;
  /** Branch, tag or commit (default "main"). */
  revision?: string;
}

/** One file of a repository. */
export interface HubFile {
  /** Path in the repository (`variables/variables.index`). */
  readonly path: string;
  /** Size in bytes, when the hub gives it. */
  readonly size?: number;
  /** SHA-256 of the content (LFS files). */
  readonly sha256?: string;
  /** Git blob SHA-1 (`sha1("blob {size}\0" + content)`), for files outside LFS. */
  readonly blobId?: string;
}

/** Model IDs are `owner/name`: letters, digits, `-`, `_`, `.`; no `..`. */
const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Checks a model ID.
 *
 * @param id E.g. `google/derm-foundation`.
 * @throws {TypeError} when it is not `owner/name`.
 */
export function checkModelId(id: string): void {
  if (!MODEL_ID.test(id) || id.includes("..")) {
    throw new TypeError(`Cannot use model ID "${id}": expected owner/name, e.g. google/derm-foundation`);
  }
}

function endpointOf(options: HubOptions): string {
  return (options.endpoint ?? DEFAULT_HF_ENDPOINT).replace(/\/+$/, "");
}

function headers(options: HubOptions, extra: Record<string, string> = {}): Headers {
  const h = new Headers(extra);
  if (options.token) h.set("Authorization", `Bearer ${options.token}`);
  return h;
}

/** Turns a refused response into a {@linkcode HubError} with advice; the token is never echoed. */
function refusal(id: string, response: Response, options: HubOptions, what: string): HubError {
  const endpoint = endpointOf(options);
  const code = response.headers.get("x-error-code") ?? "";
  if (code === "EntryNotFound") {
    return new HubError(
      id,
      "not-found",
      response.status,
      `Cannot download "${id}": ${what} was not found on ${endpoint} (HTTP ${response.status})`,
    );
  }
  if (response.status === 404 || code === "RepoNotFound") {
    return new HubError(
      id,
      "not-found",
      response.status,
      `Cannot download "${id}": no such model on ${endpoint} (HTTP ${response.status}); check the ID ` +
        "(private repositories also need HF_TOKEN)",
    );
  }
  if (response.status === 401 || response.status === 403) {
    const advice = `visit ${endpoint}/${id}, log in and accept the terms of use, create a read token at ` +
      `${endpoint}/settings/tokens, then set HF_TOKEN=<your token> and run again`;
    const message = options.token
      ? `Cannot download "${id}": access denied with the HF_TOKEN given (HTTP ${response.status}); the ` +
        `repository is gated: check that the token is valid and that its account accepted the terms: ${advice}`
      : `Cannot download "${id}": access denied (HTTP ${response.status}); the repository is gated or ` +
        `private: ${advice}`;
    return new HubError(id, "gated", response.status, message);
  }
  return new HubError(
    id,
    "http",
    response.status,
    `Cannot download "${id}": ${what} failed with HTTP ${response.status} ${response.statusText}`,
  );
}

async function request(id: string, url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new HubError(
      id,
      "network",
      0,
      `Cannot download "${id}": ${what} failed (${(e as Error).message})`,
      {
        cause: e,
      },
    );
  }
}

/**
 * Lists a model repository's files.
 *
 * @param id `owner/name`.
 * @param options Endpoint, token, revision.
 * @returns Every file with size and checksum when the hub gives them.
 * @throws {HubError} not-found (404), gated (401/403, with how to accept the terms), http or network.
 */
export async function listModelFiles(id: string, options: HubOptions = {}): Promise<HubFile[]> {
  checkModelId(id);
  const revision = encodeURIComponent(options.revision ?? "main");
  const url = `${endpointOf(options)}/api/models/${id}/revision/${revision}?blobs=true`;
  const response = await request(id, url, { headers: headers(options) }, "listing its files");
  if (!response.ok) {
    await response.body?.cancel();
    throw refusal(id, response, options, "listing its files");
  }
  let info: unknown;
  try {
    info = await response.json();
  } catch (e) {
    throw new HubError(id, "http", response.status, `Cannot download "${id}": the hub sent invalid JSON`, {
      cause: e,
    });
  }
  const siblings = (info as { siblings?: unknown })?.siblings;
  if (!Array.isArray(siblings)) {
    throw new HubError(
      id,
      "http",
      response.status,
      `Cannot download "${id}": the hub's answer has no file list`,
    );
  }
  const files: HubFile[] = [];
  for (const s of siblings) {
    const path = s?.rfilename;
    if (typeof path !== "string") continue;
    const lfs = s.lfs;
    const size = typeof lfs?.size === "number" ? lfs.size : typeof s.size === "number" ? s.size : undefined;
    files.push({
      path,
      size,
      sha256: typeof lfs?.sha256 === "string" ? lfs.sha256.toLowerCase() : undefined,
      blobId: !lfs && typeof s.blobId === "string" ? s.blobId.toLowerCase() : undefined,
    });
  }
  return files;
}

/** Options of {@linkcode downloadFile}. */
export interface DownloadOptions extends HubOptions {
  /** Attempts after a dropped connection or a server error (default 5). */
  retries?: number;
  /** Wait before the first retry, doubled each time (default 1000 ms). */
  retryDelayMs?: number;
  /** Show a progress bar (default true). */
  progress?: boolean;
  /** Where progress and resume notes go (default stderr; see {@linkcode ProgressBar}). */
  write?: (text: string) => void;
  /** Force a terminal or plain progress display. */
  interactive?: boolean;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
}

/** SHA-256 (LFS) or git blob SHA-1 of a file, read in chunks. */
async function digestFile(path: string, kind: "sha256" | "git-sha1", size: number): Promise<string> {
  const hash = createHash(kind === "sha256" ? "sha256" : "sha1");
  if (kind === "git-sha1") hash.update(`blob ${size}\0`);
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(4 * 2 ** 20);
  while (true) {
    const n = await file.read(buffer);
    if (n === null || n === 0) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

/**
 * Downloads one repository file to `dest`, through `dest.part`: a partial file from an earlier run or a
 * dropped connection is resumed with an HTTP Range request; the size and the checksum (SHA-256 for LFS
 * files, git blob SHA-1 otherwise) are checked before `dest.part` is renamed to `dest`.
 *
 * @param id `owner/name`.
 * @param file The file, as listed by {@linkcode listModelFiles}.
 * @param dest Where to write it.
 * @param options Connection, retries and progress.
 * @throws {HubError} gated, not-found, http, network (after the retries) or checksum (the `.part` is removed).
 */
export async function downloadFile(
  id: string,
  file: HubFile,
  dest: string,
  options: DownloadOptions = {},
): Promise<void> {
  checkModelId(id);
  const part = `${dest}.part`;
  const revision = encodeURIComponent(options.revision ?? "main");
  const url = `${endpointOf(options)}/${id}/resolve/${revision}/${
    file.path.split("/").map(encodeURIComponent).join("/")
  }`;
  const retries = options.retries ?? 5;
  const delay = options.retryDelayMs ?? 1000;
  const bar = options.progress === false ? undefined : new ProgressBar(file.path, {
    total: file.size,
    write: options.write,
    interactive: options.interactive,
  });
  let have = await fileSize(part);
  if (file.size !== undefined && have > file.size) {
    await Deno.remove(part);
    have = 0;
  }
  for (let attempt = 0;; attempt++) {
    if (file.size !== undefined && have === file.size) break;
    const response = await request(
      id,
      url,
      { headers: headers(options, have > 0 ? { Range: `bytes=${have}-` } : {}) },
      `downloading "${file.path}"`,
    ).catch((e) => e as HubError);
    let failure: HubError | undefined;
    if (response instanceof HubError) {
      failure = response;
    } else if (response.status === 401 || response.status === 403 || response.status === 404) {
      await response.body?.cancel();
      throw refusal(id, response, options, `"${file.path}"`);
    } else if (response.status === 416 && file.size === undefined && have > 0) {
      // Nothing past what we have: the .part is complete.
      await response.body?.cancel();
      break;
    } else if (!response.ok || !response.body) {
      await response.body?.cancel();
      failure = refusal(id, response, options, `downloading "${file.path}"`);
      if (response.status < 500 && response.status !== 429) throw failure;
    } else {
      const resumed = response.status === 206;
      const range = /^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "");
      if (!resumed || !range || Number(range[1]) !== have) {
        have = 0; // The server sent the whole file: start over.
      }
      using out = await Deno.open(part, {
        write: true,
        create: true,
        truncate: have === 0,
        append: have > 0,
      });
      try {
        for await (const chunk of response.body) {
          let written = 0;
          while (written < chunk.length) written += await out.write(chunk.subarray(written));
          have += chunk.length;
          if (file.size !== undefined && have > file.size) {
            await Deno.remove(part).catch(() => {});
            throw new HubError(
              id,
              "checksum",
              response.status,
              `Cannot download "${id}": "${file.path}" is longer than the ${file.size} bytes the hub lists`,
            );
          }
          bar?.update(have);
        }
        if (file.size === undefined) break;
        if (have === file.size) break;
        failure = new HubError(id, "network", 0, `the connection closed at byte ${have} of ${file.size}`);
      } catch (e) {
        if (e instanceof HubError && e.kind === "checksum") throw e;
        failure = new HubError(
          id,
          "network",
          0,
          `Cannot download "${id}": "${file.path}" stopped at byte ${have} (${(e as Error).message})`,
          { cause: e },
        );
      }
    }
    failure ??= new HubError(id, "network", 0, `Cannot download "${id}": "${file.path}" was cut short`);
    if (attempt >= retries) {
      throw new HubError(
        id,
        failure.kind,
        failure.status,
        `${failure.message}; gave up after ${retries + 1} attempts (run again to resume from ${have} bytes)`,
        { cause: failure },
      );
    }
    const note = `${file.path}: ${failure.message}; retrying from byte ${have}`;
    if (bar) bar.note(note);
    await new Promise((resolve) => setTimeout(resolve, delay * 2 ** attempt));
  }
  bar?.finish();
  const size = await fileSize(part);
  const bad = async (message: string) => {
    await Deno.remove(part).catch(() => {});
    return new HubError(
      id,
      "checksum",
      0,
      `Cannot download "${id}": "${file.path}" ${message}; the partial file was removed, run again`,
    );
  };
  if (file.size !== undefined && size !== file.size) {
    throw await bad(`has ${size} bytes, the hub lists ${file.size}`);
  }
  if (file.sha256) {
    const got = await digestFile(part, "sha256", size);
    if (got !== file.sha256) throw await bad(`failed its SHA-256 check: expected ${file.sha256}, got ${got}`);
  } else if (file.blobId) {
    const got = await digestFile(part, "git-sha1", size);
    if (got !== file.blobId) {
      throw await bad(`failed its git SHA-1 check: expected ${file.blobId}, got ${got}`);
    }
  }
  await Deno.rename(part, dest);
}
