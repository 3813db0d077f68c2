/**
 * The demo page (`web/index.html`, served by `deno task web`): weights from `?weights=` (a URL or
 * `procedural:ARCH[:SEED]`, with `&preset=`, `&size=`, `&resize=`) or a local file; images from a file
 * input or drag-and-drop, embedded in a Web Worker (`web/worker_client.ts`) with per-image progress; a
 * results table, a PCA scatter (`web/pca.ts`), class scores with a `classifier.json` (`web/classifier.ts`,
 * `?classifier=URL` or a file input), the command line's `.npy` files for download (`web/export.ts`), and
 * clear messages for what fails (`web/messages.ts`).
 *
 * State for tests and scripts: `body[data-state]` is `idle`, `loading`, `ready`, `embedding` or `error`;
 * `body[data-pending]` counts images not finished; `body[data-last-run]` is `{images, ms}` of the last batch of
 * files (the worker's time from request to last row: decode, preprocessing, GPU, readback); each `tr[data-state]` is `queued`, `decoded`,
 * `embedding`, `done` or `error`; `#message[data-kind]` is the failure's kind.
 *
 * This module is browser compatible.
 * @module
 */
import { applyClassifier, type Classifier, classifierMismatches, parseClassifier } from "./classifier.ts";
import { ENGINE, npyFiles, scoresCsv, sha256Hex } from "./export.ts";
import { explainError } from "./messages.ts";
import { pca2 } from "./pca.ts";
import {
  type ImageState,
  type LoadOptions,
  type LoadPhase,
  serializeError,
  type WeightsSpec,
} from "./protocol.ts";
import { forgetCachedWeights } from "./weights.ts";
import { type ImageResult, WorkerEmbedder } from "./worker_client.ts";

type RowState = "queued" | ImageState | "done" | "error";

interface Row {
  readonly index: number;
  readonly file: File;
  readonly tr: HTMLTableRowElement;
  state: RowState;
  hash?: string;
  embedding?: Float32Array;
  scores?: Float64Array;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const rows: Row[] = [];
let embedder: WorkerEmbedder | undefined;
let weightsName = "";
let loadContext: { weights?: string; size?: number } = {};
let classifier: Classifier | undefined;
let classifierName = "";
let running = false;
let embedMs = 0;
let embeddedCount = 0;
let objectUrls: string[] = [];

function setState(state: "idle" | "loading" | "ready" | "embedding" | "error"): void {
  document.body.dataset.state = state;
}

function updatePending(): void {
  document.body.dataset.pending = String(
    rows.filter((r) => r.state !== "done" && r.state !== "error").length,
  );
}

function showMessage(error: unknown, context = loadContext): void {
  const e = explainError(serializeError(error), context);
  const box = $("message");
  box.hidden = false;
  box.dataset.kind = e.kind;
  box.querySelector(".title")!.textContent = e.title;
  box.querySelector(".detail")!.textContent = e.detail;
  box.querySelector(".hint")!.textContent = e.hint;
}

function clearMessage(): void {
  $("message").hidden = true;
  delete $("message").dataset.kind;
}

function mb(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

function showProgress(phase: LoadPhase, done: number, total: number): void {
  const bar = $<HTMLProgressElement>("load-progress");
  bar.hidden = false;
  if (total > 0) {
    bar.max = total;
    bar.value = done;
  } else bar.removeAttribute("value");
  const what = phase === "download" ? "Downloading weights" : "Uploading weights to the GPU";
  $("model-status").textContent = `${what}: ${mb(done)}${total > 0 ? ` of ${mb(total)}` : ""}`;
}

/** The `?weights=` value as the worker takes it: procedural names as they are, URLs made absolute. */
function absoluteWeights(value: string): string {
  return value.startsWith("procedural:") ? value : new URL(value, location.href).href;
}

function optionalNumber(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  return Number(value);
}

async function loadModel(spec: WeightsSpec, name: string, options: LoadOptions): Promise<void> {
  clearMessage();
  setState("loading");
  embedder?.dispose();
  embedder = undefined;
  weightsName = name;
  loadContext = { weights: name, size: options.size };
  $("model-status").textContent = `Loading ${name}…`;
  try {
    embedder = await WorkerEmbedder.create(new URL("./worker.js", import.meta.url), spec, {
      ...options,
      onLoadProgress: showProgress,
    });
  } catch (e) {
    $("load-progress").hidden = true;
    $("model-status").textContent = `Could not load ${name}.`;
    setState("error");
    showMessage(e);
    for (const r of rows) if (r.state === "queued") setRow(r, "error", "no model");
    updatePending();
    return;
  }
  $("load-progress").hidden = true;
  const info = embedder.info;
  const origin = {
    network: info.notCached ? `downloaded (not cached: ${info.notCached})` : "downloaded and cached",
    cache: "from this browser's cache",
    file: "from a local file",
    procedural: "generated procedurally (meaningless embeddings, for testing)",
  }[info.origin];
  $("model-status").textContent = `${info.description}. Weights ${origin}; ready in ${
    (info.loadMs / 1000).toFixed(1)
  } s on ${info.adapter}.`;
  document.body.dataset.origin = info.origin;
  setState("ready");
  checkClassifier();
  void processQueue();
}

function setRow(row: Row, state: RowState, note = ""): void {
  row.state = state;
  row.tr.dataset.state = state;
  const cell = row.tr.querySelector<HTMLTableCellElement>("td.state")!;
  const steps: Record<string, number> = { queued: 0, decoded: 1, embedding: 2 };
  if (state in steps) {
    cell.replaceChildren(progressElement(steps[state], 3), document.createTextNode(` ${state}`));
  } else if (state === "done") {
    cell.textContent = "done";
  } else {
    cell.textContent = note;
  }
}

function progressElement(value: number, max: number): HTMLProgressElement {
  const p = document.createElement("progress");
  p.max = max;
  p.value = value;
  return p;
}

function addFiles(files: Iterable<File>): void {
  const body = $("results").querySelector("tbody")!;
  for (const file of files) {
    const tr = document.createElement("tr");
    const index = rows.length;
    tr.dataset.index = String(index);
    const thumb = document.createElement("img");
    thumb.alt = "";
    if (/^image\/(png|jpeg)$/.test(file.type)) {
      const url = URL.createObjectURL(file);
      thumb.src = url;
    }
    const cells = [String(index + 1), "", file.name, "", "", ""].map((text) => {
      const td = document.createElement("td");
      td.textContent = text;
      return td;
    });
    cells[0].className = "num";
    cells[1].append(thumb);
    cells[2].className = "name";
    cells[3].className = "state";
    cells[4].className = "num norm";
    cells[5].className = "vector";
    tr.append(...cells);
    for (const _ of classifier?.classes ?? []) tr.append(scoreCell());
    body.append(tr);
    const row: Row = { index, file, tr, state: "queued" };
    rows.push(row);
    setRow(row, "queued");
  }
  updatePending();
  updateSummary();
  void processQueue();
}

function scoreCell(): HTMLTableCellElement {
  const td = document.createElement("td");
  td.className = "score-cell";
  return td;
}

async function processQueue(): Promise<void> {
  if (running || !embedder) return;
  const batch = rows.filter((r) => r.state === "queued");
  if (batch.length === 0) return;
  running = true;
  setState("embedding");
  try {
    const images = await Promise.all(batch.map(async (r) => {
      const bytes = new Uint8Array(await r.file.arrayBuffer());
      r.hash = await sha256Hex(bytes);
      return { name: r.file.name, bytes };
    }));
    const { ms } = await embedder.embedEach(images, {
      onState: (i, state) => setRow(batch[i], state),
      onResult: (i, result) => finishRow(batch[i], result),
    });
    embedMs += ms;
    document.body.dataset.lastRun = JSON.stringify({ images: batch.length, ms });
  } catch (e) {
    showMessage(e);
    for (const r of batch) if (r.state !== "done" && r.state !== "error") setRow(r, "error", "GPU failure");
  } finally {
    running = false;
    updatePending();
    updateSummary();
    updateDownloads();
    updateScatter();
    setState(embedder ? "ready" : "error");
  }
  if (rows.some((r) => r.state === "queued")) void processQueue();
}

function finishRow(row: Row, result: ImageResult): void {
  if ("error" in result) {
    const e = explainError(serializeError(result.error), loadContext);
    setRow(row, "error", e.title);
    row.tr.querySelector("td.state")!.setAttribute("title", `${e.detail}\n${e.hint}`);
    row.tr.dataset.kind = e.kind;
    row.tr.querySelector("img")?.remove();
  } else {
    row.embedding = result.embedding;
    embeddedCount++;
    setRow(row, "done");
    let norm = 0;
    for (const v of result.embedding) norm += v * v;
    row.tr.querySelector("td.norm")!.textContent = Math.sqrt(norm).toFixed(3);
    row.tr.querySelector("td.vector")!.textContent = `[${
      Array.from(result.embedding.subarray(0, 4), (v) => v.toFixed(4)).join(", ")
    }, …]`;
    scoreRow(row);
  }
  updatePending();
}

function scoreRow(row: Row): void {
  const cells = row.tr.querySelectorAll<HTMLTableCellElement>("td.score-cell");
  if (!classifier || !row.embedding || classifier.model.embedding_size !== row.embedding.length) {
    row.scores = undefined;
    cells.forEach((c) => (c.textContent = ""));
    return;
  }
  const scores = applyClassifier(classifier, row.embedding);
  row.scores = scores;
  const top = scores.indexOf(Math.max(...scores));
  cells.forEach((cell, k) => {
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(scores[k] * 40)}px`;
    const value = document.createElement("span");
    value.className = k === top ? "score top" : "score";
    value.textContent = `${(scores[k] * 100).toFixed(1)} %`;
    cell.replaceChildren(bar, value);
    cell.dataset.score = String(scores[k]);
  });
}

function done(): Row[] {
  return rows.filter((r) => r.state === "done" && r.embedding);
}

function updateSummary(): void {
  const ok = done().length;
  const failed = rows.filter((r) => r.state === "error").length;
  if (rows.length === 0) {
    $("summary").textContent = "No images yet.";
    return;
  }
  const rate = embedMs > 0 ? embeddedCount / (embedMs / 1000) : 0;
  document.body.dataset.imagesPerSecond = rate > 0 ? rate.toFixed(3) : "";
  $("summary").textContent = `${rows.length} image${rows.length === 1 ? "" : "s"}: ${ok} embedded` +
    (failed ? `, ${failed} failed` : "") +
    (rate > 0 ? `; ${rate.toFixed(1)} images/s in the worker (decode + GPU)` : "") + ".";
}

function downloadLink(id: string, name: string, blob: Blob, label: string): HTMLAnchorElement {
  const a = document.createElement("a");
  a.id = id;
  a.download = name;
  a.href = URL.createObjectURL(blob);
  objectUrls.push(a.href);
  a.textContent = label;
  return a;
}

function updateDownloads(): void {
  for (const u of objectUrls) URL.revokeObjectURL(u);
  objectUrls = [];
  const ok = done();
  const box = $("downloads");
  if (ok.length === 0 || !embedder) {
    box.replaceChildren();
    return;
  }
  const f = embedder.facts;
  const files = npyFiles(
    ok.map((r) => ({ path: r.file.name, hash: r.hash ?? "", embedding: r.embedding! })),
    {
      model: weightsName,
      architecture: f.architecture,
      preset: f.preset,
      size: f.size,
      embeddingSize: f.embeddingSize,
    },
  );
  const links = [
    downloadLink(
      "download-npy",
      "embeddings.npy",
      new Blob([files.npy.slice()]),
      `embeddings.npy [${ok.length}, ${f.embeddingSize}]`,
    ),
    downloadLink(
      "download-paths",
      "embeddings.npy.paths.txt",
      new Blob([files.pathsTxt], { type: "text/plain" }),
      "paths.txt",
    ),
    downloadLink(
      "download-json",
      "embeddings.npy.json",
      new Blob([files.json], { type: "application/json" }),
      "facts .json",
    ),
  ];
  const scored = ok.filter((r) => r.scores);
  if (classifier && scored.length > 0) {
    const csv = scoresCsv(classifier.classes, scored.map((r) => ({ path: r.file.name, scores: r.scores! })));
    links.push(
      downloadLink("download-scores", "scores.csv", new Blob([csv], { type: "text/csv" }), "scores.csv"),
    );
  }
  box.replaceChildren(document.createTextNode("Download: "), ...links);
}

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fdb", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d"];

function svg(name: string, attributes: Record<string, string | number>): SVGElement {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, String(v));
  return e;
}

function updateScatter(): void {
  const ok = done();
  const plot = $("scatter-plot") as unknown as SVGSVGElement;
  const caption = $("scatter-caption");
  if (ok.length < 2) {
    plot.replaceChildren();
    caption.textContent = "The first two principal components of the embeddings appear here (from 2 images).";
    return;
  }
  const { x, y, explained } = pca2(ok.map((r) => r.embedding!));
  const size = 380;
  const pad = 30;
  const span = (v: Float64Array) => {
    const lo = Math.min(...v);
    const hi = Math.max(...v);
    return { lo, range: hi - lo || 1 };
  };
  const sx = span(x);
  const sy = span(y);
  const px = (v: number) => pad + ((v - sx.lo) / sx.range) * (size - 2 * pad);
  const py = (v: number) => size - pad - ((v - sy.lo) / sy.range) * (size - 2 * pad);
  const children: SVGElement[] = [
    svg("rect", { x: 0.5, y: 0.5, width: size - 1, height: size - 1, fill: "white", stroke: "#d9dde5" }),
  ];
  const xLabel = svg("text", { x: size / 2, y: size - 8, "text-anchor": "middle" });
  xLabel.textContent = `PC1 (${(explained[0] * 100).toFixed(1)} % of variance)`;
  const yLabel = svg("text", {
    x: 12,
    y: size / 2,
    "text-anchor": "middle",
    transform: `rotate(-90 12 ${size / 2})`,
  });
  yLabel.textContent = `PC2 (${(explained[1] * 100).toFixed(1)} %)`;
  children.push(xLabel, yLabel);
  ok.forEach((r, i) => {
    const k = r.scores ? r.scores.indexOf(Math.max(...r.scores)) : 0;
    const dot = svg("circle", {
      cx: px(x[i]).toFixed(1),
      cy: py(y[i]).toFixed(1),
      r: 5,
      fill: PALETTE[k % PALETTE.length],
      "fill-opacity": 0.75,
      stroke: "white",
    });
    const title = svg("title", {});
    title.textContent = `${r.index + 1}. ${r.file.name}` +
      (r.scores && classifier ? ` (${classifier.classes[k]})` : "");
    dot.append(title);
    children.push(dot);
  });
  plot.replaceChildren(...children);
  caption.textContent = `${ok.length} embeddings on their first two principal components` +
    (classifier ? `, coloured by the most likely class of ${classifierName}:` : ".");
  for (const [k, cls] of (classifier?.classes ?? []).entries()) {
    const key = document.createElement("span");
    key.style.color = PALETTE[k % PALETTE.length];
    key.textContent = " \u25cf ";
    caption.append(key, document.createTextNode(cls));
  }
}

function checkClassifier(): void {
  const status = $("classifier-status");
  if (!classifier) return;
  const mismatch = embedder
    ? classifierMismatches(classifier, { model: weightsName, ...embedder.facts })
    : [];
  status.textContent =
    `${classifierName}, head ${classifier.head.label}: ${classifier.classes.length} classes (${
      classifier.classes.join(", ")
    })` +
    (mismatch.length ? `. Trained on another model: ${mismatch.join("; ")}` : "");
  status.dataset.mismatch = String(mismatch.length);
}

function setClassifier(c: Classifier, name: string): void {
  classifier = c;
  classifierName = name;
  const head = $("results-head");
  head.querySelectorAll("th.class").forEach((th) => th.remove());
  for (const cls of c.classes) {
    const th = document.createElement("th");
    th.className = "class";
    th.textContent = cls;
    head.append(th);
  }
  for (const r of rows) {
    r.tr.querySelectorAll("td.score-cell").forEach((td) => td.remove());
    for (const _ of c.classes) r.tr.append(scoreCell());
    scoreRow(r);
  }
  checkClassifier();
  updateDownloads();
  updateScatter();
  document.body.dataset.classifier = name;
}

async function loadClassifier(text: Promise<string>, name: string): Promise<void> {
  try {
    const head = new URLSearchParams(location.search).get("head") ?? undefined;
    setClassifier(parseClassifier(await text, name, head), name);
  } catch (e) {
    showMessage(e);
  }
}

async function addSamples(names: string[]): Promise<void> {
  const files = await Promise.all(names.map(async (n) => {
    const blob = await (await fetch(new URL(`./samples/${n}`, import.meta.url))).blob();
    return new File([blob], n, { type: "image/jpeg" });
  }));
  addFiles(files);
}

function wire(): void {
  const params = new URLSearchParams(location.search);
  const weights = params.get("weights") ?? "";
  const preset = params.get("preset") ?? "";
  const size = params.get("size") ?? "";
  const resize = params.get("resize") ?? "";
  $<HTMLInputElement>("weights-url").value = weights;
  $<HTMLSelectElement>("preset").value = preset;
  $<HTMLInputElement>("size").value = size;
  $("footer").append(document.createTextNode(` ${ENGINE}.`));

  const options = (): LoadOptions => ({
    preset: $<HTMLSelectElement>("preset").value || undefined,
    size: optionalNumber($<HTMLInputElement>("size").value),
    resize: optionalNumber(resize),
    maxBatch: optionalNumber(params.get("batch")),
    kernels: params.get("kernels")?.split(",").filter((k) => k !== ""),
  });
  $("weights-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $<HTMLInputElement>("weights-url").value.trim();
    if (!value) return;
    const url = new URL(location.href);
    url.searchParams.set("weights", value);
    const o = options();
    for (const k of ["preset", "size"] as const) {
      if (o[k] !== undefined) url.searchParams.set(k, String(o[k]));
      else url.searchParams.delete(k);
    }
    history.replaceState(null, "", url);
    void loadModel(absoluteWeights(value), value, o);
  });
  $<HTMLInputElement>("weights-file").addEventListener("change", (event) => {
    const file = (event.target as HTMLInputElement).files?.[0];
    if (file) void loadModel({ blob: file, name: file.name }, file.name, options());
  });
  $("forget-cache").addEventListener("click", async () => {
    const had = await forgetCachedWeights();
    $("model-status").textContent = had ? "Cached weights deleted." : "No cached weights.";
  });
  $<HTMLInputElement>("images").addEventListener("change", (event) => {
    const input = event.target as HTMLInputElement;
    addFiles(Array.from(input.files ?? []));
    input.value = "";
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    addFiles(Array.from(event.dataTransfer?.files ?? []));
  });
  // A file dropped beside the zone must not make the browser navigate to it.
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (e) => e.preventDefault());
  $<HTMLInputElement>("classifier-file").addEventListener("change", (event) => {
    const file = (event.target as HTMLInputElement).files?.[0];
    if (file) void loadClassifier(file.text(), file.name);
  });
  const classifierUrl = params.get("classifier");
  if (classifierUrl) {
    const name = new URL(classifierUrl, location.href).pathname.split("/").pop() || classifierUrl;
    void loadClassifier(
      fetch(new URL(classifierUrl, location.href)).then((r) => {
        if (!r.ok) {
          throw new TypeError(`Cannot fetch classifier "${classifierUrl}": ${r.status} ${r.statusText}`);
        }
        return r.text();
      }),
      name,
    );
  }
  fetch(new URL("./samples/list.json", import.meta.url)).then((r) => (r.ok ? r.json() : [])).then(
    (names: string[]) => {
      if (names.length === 0) return;
      const button = $<HTMLButtonElement>("samples");
      button.hidden = false;
      button.textContent = `try the ${names.length} CC0 samples`;
      button.addEventListener("click", () => void addSamples(names));
    },
    () => {},
  );
  if (weights) void loadModel(absoluteWeights(weights), weights, options());
}

wire();
