/**
 * The page's linear probe: reads the `classifier.json` that `deno task probe` writes and turns one embedding
 * into a probability per class. The whole contract with the probe is in this file, so that the page can be
 * pointed at `models/classifier.ts` once that lands (its `applyClassifier` replaces the one here).
 *
 * Format (JSON):
 *
 * ```
 * { classes: string[K],                       // K >= 2 class names, in score order
 *   weights: number[K][D] | number[1][D],     // one row per class; one row for a binary probe
 *   intercepts: number[K] | number[1],
 *   standardize?: { mean: number[D], std: number[D] },   // x' = (x - mean) / std before the weights
 *   model: { model, architecture, preset, input_size, embedding_size } }   // what it was trained on
 * ```
 *
 * Scores: a binary probe (one row, two classes) gives p = sigmoid(w . x' + b) for `classes[1]` and 1 - p
 * for `classes[0]` (scikit-learn's `predict_proba` of a binary `LogisticRegression`); K rows give
 * softmax(W x' + b) (the multinomial one). Everything in float64.
 *
 * This module is browser compatible.
 * @module
 */

/** What a classifier was trained on (the `model` object of `classifier.json`). */
export interface ClassifierModel {
  /** The weights the embeddings came from (`--weights` value or model id). */
  readonly model: string;
  /** Architecture summary, as output files state it. */
  readonly architecture: string;
  /** Preprocessing preset. */
  readonly preset: string;
  /** Model input size S. */
  readonly input_size: number;
  /** Floats per embedding (D). */
  readonly embedding_size: number;
}

/** A parsed, validated `classifier.json`. */
export interface Classifier {
  /** Class names (K >= 2), in score order. */
  readonly classes: readonly string[];
  /** [K][D], or [1][D] for a binary probe. */
  readonly weights: readonly (readonly number[])[];
  /** [K], or [1] for a binary probe. */
  readonly intercepts: readonly number[];
  /** Per-feature standardisation applied before the weights. */
  readonly standardize?: { readonly mean: readonly number[]; readonly std: readonly number[] };
  /** What it was trained on. */
  readonly model: ClassifierModel;
}

function fail(file: string, what: string): never {
  throw new TypeError(`Cannot read classifier "${file}": ${what}`);
}

function finiteArray(value: unknown, file: string, name: string, length?: number): number[] {
  if (!Array.isArray(value)) fail(file, `expected "${name}" to be an array of numbers, got ${typeof value}`);
  if (length !== undefined && value.length !== length) {
    fail(file, `expected "${name}" to hold ${length} numbers, got ${value.length}`);
  }
  const bad = value.findIndex((v) => typeof v !== "number" || !Number.isFinite(v));
  if (bad >= 0) {
    fail(file, `expected finite numbers in "${name}", got ${JSON.stringify(value[bad])} at ${bad}`);
  }
  return value as number[];
}

/**
 * Validates a parsed `classifier.json`.
 *
 * @param json The parsed JSON (or its text).
 * @param file Its name, for messages.
 * @returns The classifier.
 * @throws {TypeError} For a missing field, a wrong length or a non-finite number, naming the field.
 * @example
 * ```ts
 * const c = parseClassifier(await (await fetch("classifier.json")).text(), "classifier.json");
 * ```
 */
export function parseClassifier(json: unknown, file = "classifier.json"): Classifier {
  if (typeof json === "string") {
    try {
      json = JSON.parse(json);
    } catch (e) {
      fail(file, `not JSON (${(e as Error).message})`);
    }
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail(file, "expected a JSON object");
  const o = json as Record<string, unknown>;
  const classes = o.classes;
  if (!Array.isArray(classes) || classes.length < 2 || classes.some((c) => typeof c !== "string")) {
    fail(file, `expected "classes" to be at least 2 strings, got ${JSON.stringify(classes)}`);
  }
  if (!Array.isArray(o.weights) || o.weights.length === 0) {
    fail(file, `expected "weights" to be [K][D] numbers`);
  }
  const k = o.weights.length;
  if (k !== classes.length && !(k === 1 && classes.length === 2)) {
    fail(
      file,
      `expected ${classes.length} rows of "weights" (one per class${
        classes.length === 2 ? ", or 1 for a binary probe" : ""
      }), got ${k}`,
    );
  }
  const d = Array.isArray(o.weights[0]) ? o.weights[0].length : 0;
  if (d < 1) fail(file, `expected "weights" rows of D >= 1 numbers`);
  const weights = o.weights.map((row, i) => finiteArray(row, file, `weights[${i}]`, d));
  const intercepts = finiteArray(o.intercepts, file, "intercepts", k);
  let standardize: Classifier["standardize"];
  if (o.standardize !== undefined && o.standardize !== null) {
    const s = o.standardize as Record<string, unknown>;
    const mean = finiteArray(s.mean, file, "standardize.mean", d);
    const std = finiteArray(s.std, file, "standardize.std", d);
    const zero = std.findIndex((v) => !(v > 0));
    if (zero >= 0) fail(file, `expected "standardize.std" > 0, got ${std[zero]} at ${zero}`);
    standardize = { mean, std };
  }
  const m = o.model as Record<string, unknown> | undefined;
  if (typeof m !== "object" || m === null) fail(file, `expected a "model" object`);
  if (m.embedding_size !== d) {
    fail(file, `expected "model.embedding_size" to equal the weights' D = ${d}, got ${m.embedding_size}`);
  }
  const model: ClassifierModel = {
    model: String(m.model ?? ""),
    architecture: String(m.architecture ?? ""),
    preset: String(m.preset ?? ""),
    input_size: Number(m.input_size),
    embedding_size: d,
  };
  return { classes: classes as string[], weights, intercepts, standardize, model };
}

/**
 * The class probabilities of one embedding.
 *
 * @param classifier A parsed classifier.
 * @param embedding D floats.
 * @returns K probabilities summing to 1, in `classifier.classes` order.
 * @throws {RangeError} When the embedding's length is not the classifier's D.
 * @example
 * ```ts
 * const p = applyClassifier(classifier, row);
 * const best = classifier.classes[p.indexOf(Math.max(...p))];
 * ```
 */
export function applyClassifier(classifier: Classifier, embedding: ArrayLike<number>): Float64Array {
  const d = classifier.model.embedding_size;
  if (embedding.length !== d) {
    throw new RangeError(
      `Cannot apply classifier: expected embeddings of ${d} floats (${classifier.model.model}), got ${embedding.length}`,
    );
  }
  const x = new Float64Array(d);
  const s = classifier.standardize;
  for (let j = 0; j < d; j++) x[j] = s ? (embedding[j] - s.mean[j]) / s.std[j] : embedding[j];
  const logits = classifier.weights.map((w, k) => {
    let z = classifier.intercepts[k];
    for (let j = 0; j < d; j++) z += w[j] * x[j];
    return z;
  });
  if (logits.length === 1) {
    const z = logits[0];
    // sigmoid without overflow: exp of a non-positive number only.
    const p = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
    return Float64Array.of(1 - p, p);
  }
  const top = Math.max(...logits);
  const e = logits.map((z) => Math.exp(z - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return Float64Array.from(e, (v) => v / sum);
}

/**
 * What differs between the model a classifier was trained on and the one loaded: one line per mismatch
 * (the scores are meaningless when the embedding size differs, doubtful when anything else does).
 *
 * @param classifier The classifier.
 * @param loaded The loaded model's facts (`Embedder.facts`) and weights name.
 * @returns Mismatch descriptions; empty when everything agrees.
 */
export function classifierMismatches(
  classifier: Classifier,
  loaded: { model: string; architecture: string; preset: string; size: number; embeddingSize: number },
): string[] {
  const m = classifier.model;
  const out: string[] = [];
  if (m.embedding_size !== loaded.embeddingSize) {
    out.push(`embedding size: trained on ${m.embedding_size}, this model gives ${loaded.embeddingSize}`);
  }
  if (m.architecture && m.architecture !== loaded.architecture) {
    out.push(`architecture: trained on "${m.architecture}", loaded "${loaded.architecture}"`);
  }
  if (m.preset && m.preset !== loaded.preset) {
    out.push(`preset: trained on ${m.preset}, loaded ${loaded.preset}`);
  }
  if (Number.isFinite(m.input_size) && m.input_size !== loaded.size) {
    out.push(`input size: trained on ${m.input_size}, loaded ${loaded.size}`);
  }
  return out;
}
