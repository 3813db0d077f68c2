/**
 * The classifier file of `deno task probe --out classifier.json`: linear heads (L2 logistic regression)
 * over the embeddings of one embedding model, with the facts that identify that model, so that applying
 * the classifier to another model's embeddings is refused. The server and the web page read it with
 * {@linkcode parseClassifier} and score embeddings with {@linkcode applyClassifier}.
 *
 * ```json
 * {
 *   "format": "derm-webgpu-classifier", "version": 1,
 *   "embedding": { "model": "derm_foundation.safetensors", "architecture": "...", "preset": "derm",
 *                  "input_size": 448, "embedding_size": 6144 },
 *   "training": { "kind": "logreg", "C": 1, "standardize": false, ... },
 *   "heads": [{ "label": "benign_malignant", "classes": ["benign", "malignant"],
 *               "weights": [[...6144 numbers]], "intercepts": [-2.7],
 *               "standardization": null }]
 * }
 * ```
 *
 * A head with two classes has one weight row, for the second class (p = sigmoid(w.x + b)); with K > 2
 * classes, K rows and a softmax. With `standardization`, x is first replaced by (x - mean) / scale.
 * Classes are sorted (code-unit order), as scikit-learn's `classes_`.
 *
 * This module is browser compatible.
 * @module
 */

/** `format` of a classifier file. */
export const CLASSIFIER_FORMAT = "derm-webgpu-classifier";
/** `version` of the format written here. */
export const CLASSIFIER_VERSION = 1;

/**
 * The facts an embeddings file states about the model that made it (null: not stated). They identify
 * the embedding space a classifier was trained in.
 */
export interface EmbeddingIdentity {
  /** The weights or model (`--weights` / `--model` of `deno task embed`). */
  readonly model: string | null;
  /** Architecture summary. */
  readonly architecture: string | null;
  /** Numeric preset (`derm`, `bit`). */
  readonly preset: string | null;
  /** Model input size S. */
  readonly input_size: number | null;
  /** Floats per embedding (D). */
  readonly embedding_size: number;
}

/** The facts of {@linkcode EmbeddingIdentity} compared by {@linkcode classifierIdentityMismatch}. */
export const IDENTITY_FACTS = ["model", "architecture", "preset", "input_size", "embedding_size"] as const;

/** Per-feature standardisation: x' = (x - mean) / scale. */
export interface Standardization {
  /** D means. */
  readonly mean: readonly number[];
  /** D scales (> 0). */
  readonly scale: readonly number[];
}

/** One label's linear model, as stored. */
export interface ClassifierHead {
  /** The label column it predicts. */
  readonly label: string;
  /** Class names, sorted. */
  readonly classes: readonly string[];
  /** 1 row of D (two classes: the second class's logit) or one row per class. */
  readonly weights: readonly (readonly number[])[];
  /** One per weight row. */
  readonly intercepts: readonly number[];
  /** Applied to the embedding before the weights, or null. */
  readonly standardization: Standardization | null;
}

/** A classifier file. */
export interface Classifier {
  /** Always {@linkcode CLASSIFIER_FORMAT}. */
  readonly format: typeof CLASSIFIER_FORMAT;
  /** Always {@linkcode CLASSIFIER_VERSION}. */
  readonly version: typeof CLASSIFIER_VERSION;
  /** The embedding model it was trained on. */
  readonly embedding: EmbeddingIdentity;
  /** How it was trained (free-form facts: kind, C, solver, tolerance, rows...). */
  readonly training: Readonly<Record<string, unknown>>;
  /** One head per label column. */
  readonly heads: readonly ClassifierHead[];
}

/**
 * A head in computing form: weights flattened, standardisation folded into reciprocal scales.
 */
export interface LinearModel {
  /** Class names, sorted. */
  readonly classes: readonly string[];
  /** Weight rows R (1 for two classes, else K), each D long: [R, D] row-major. */
  readonly weights: Float64Array;
  /** R intercepts. */
  readonly intercepts: Float64Array;
  /** D means, or undefined (no standardisation). */
  readonly mean?: Float64Array;
  /** D scales, or undefined. */
  readonly scale?: Float64Array;
}

/** Probabilities of one head for each embedding given to {@linkcode applyClassifier}. */
export interface HeadProbabilities {
  /** The head's label column. */
  readonly label: string;
  /** Its classes, in the order of each row's probabilities. */
  readonly classes: readonly string[];
  /** One row per embedding: a probability per class, summing to 1. */
  readonly probabilities: Float64Array[];
  /** The most probable class of each embedding (ties: the class that sorts first). */
  readonly predicted: string[];
}

/** Embedding size of a linear model (D). */
export function linearModelSize(model: LinearModel): number {
  return model.weights.length / model.intercepts.length;
}

/**
 * Class probabilities of one embedding.
 *
 * @param model The head.
 * @param x D values (read from `offset`).
 * @param offset Where x starts in `x` (for rows of a flat matrix).
 * @returns One probability per class.
 */
export function linearProbabilities(model: LinearModel, x: ArrayLike<number>, offset = 0): Float64Array {
  const r = model.intercepts.length;
  const d = model.weights.length / r;
  const z = new Float64Array(r);
  const { weights: w, mean, scale } = model;
  for (let k = 0; k < r; k++) {
    let s = model.intercepts[k];
    const base = k * d;
    if (mean && scale) {
      for (let j = 0; j < d; j++) s += w[base + j] * ((x[offset + j] - mean[j]) / scale[j]);
    } else for (let j = 0; j < d; j++) s += w[base + j] * x[offset + j];
    z[k] = s;
  }
  if (r === 1) {
    const p1 = 1 / (1 + Math.exp(-z[0]));
    return Float64Array.of(1 - p1, p1);
  }
  let max = -Infinity;
  for (let k = 0; k < r; k++) max = Math.max(max, z[k]);
  let sum = 0;
  for (let k = 0; k < r; k++) sum += z[k] = Math.exp(z[k] - max);
  for (let k = 0; k < r; k++) z[k] /= sum;
  return z;
}

/** Index of the largest value (ties: the first). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < values.length; k++) if (values[k] > values[best]) best = k;
  return best;
}

/** A stored head in computing form. */
export function headToLinearModel(head: ClassifierHead): LinearModel {
  const d = head.weights[0].length;
  const weights = new Float64Array(head.weights.length * d);
  head.weights.forEach((row, k) => weights.set(row, k * d));
  return {
    classes: [...head.classes],
    weights,
    intercepts: Float64Array.from(head.intercepts),
    mean: head.standardization ? Float64Array.from(head.standardization.mean) : undefined,
    scale: head.standardization ? Float64Array.from(head.standardization.scale) : undefined,
  };
}

/** A computing-form model as a stored head for `label`. */
export function linearModelToHead(label: string, model: LinearModel): ClassifierHead {
  const r = model.intercepts.length;
  const d = model.weights.length / r;
  return {
    label,
    classes: [...model.classes],
    weights: Array.from({ length: r }, (_, k) => Array.from(model.weights.subarray(k * d, (k + 1) * d))),
    intercepts: Array.from(model.intercepts),
    standardization: model.mean && model.scale
      ? { mean: Array.from(model.mean), scale: Array.from(model.scale) }
      : null,
  };
}

/**
 * Checks a parsed JSON value against the classifier format.
 *
 * @param value `JSON.parse` of a classifier file.
 * @param name The file's name, for messages.
 * @returns The value, typed.
 * @throws {TypeError} Naming the first field that is missing or malformed.
 * @example
 * ```ts
 * const classifier = parseClassifier(JSON.parse(text), "classifier.json");
 * ```
 */
export function parseClassifier(value: unknown, name = "classifier"): Classifier {
  const fail = (field: string, expected: string, got: unknown): never => {
    throw new TypeError(
      `Cannot read classifier "${name}": expected ${field} to be ${expected}, got ${describe(got)}`,
    );
  };
  const obj = (v: unknown, field: string) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? v as Record<string, unknown>
      : fail(field, "an object", v);
  const root = obj(value, "the file");
  if (root.format !== CLASSIFIER_FORMAT) fail("format", `"${CLASSIFIER_FORMAT}"`, root.format);
  if (root.version !== CLASSIFIER_VERSION) fail("version", String(CLASSIFIER_VERSION), root.version);
  const e = obj(root.embedding, "embedding");
  const d = e.embedding_size;
  if (!Number.isInteger(d) || (d as number) < 1) fail("embedding.embedding_size", "a positive integer", d);
  for (const k of ["model", "architecture", "preset"] as const) {
    if (e[k] !== null && typeof e[k] !== "string") fail(`embedding.${k}`, "a string or null", e[k]);
  }
  if (e.input_size !== null && !Number.isInteger(e.input_size)) {
    fail("embedding.input_size", "an integer or null", e.input_size);
  }
  obj(root.training, "training");
  if (!Array.isArray(root.heads) || root.heads.length === 0) fail("heads", "a non-empty array", root.heads);
  (root.heads as unknown[]).forEach((h, i) => {
    const at = `heads[${i}]`;
    const head = obj(h, at);
    if (typeof head.label !== "string") fail(`${at}.label`, "a string", head.label);
    const classes = head.classes;
    if (
      !Array.isArray(classes) || classes.length < 2 || classes.some((c) => typeof c !== "string") ||
      new Set(classes).size !== classes.length
    ) fail(`${at}.classes`, "two or more distinct strings", classes);
    const k = (classes as string[]).length;
    const rows = k === 2 ? 1 : k;
    const w = head.weights;
    if (!Array.isArray(w) || w.length !== rows) fail(`${at}.weights`, `${rows} rows for ${k} classes`, w);
    (w as unknown[]).forEach((row, r) => {
      if (!finiteArray(row, d as number)) fail(`${at}.weights[${r}]`, `${d} finite numbers`, row);
    });
    if (!finiteArray(head.intercepts, rows)) {
      fail(`${at}.intercepts`, `${rows} finite numbers`, head.intercepts);
    }
    if (head.standardization !== null) {
      const s = obj(head.standardization, `${at}.standardization`);
      if (!finiteArray(s.mean, d as number)) {
        fail(`${at}.standardization.mean`, `${d} finite numbers`, s.mean);
      }
      if (!finiteArray(s.scale, d as number) || (s.scale as number[]).some((v) => !(v > 0))) {
        fail(`${at}.standardization.scale`, `${d} positive numbers`, s.scale);
      }
    }
  });
  return value as Classifier;
}

function finiteArray(v: unknown, length: number): boolean {
  return Array.isArray(v) && v.length === length &&
    v.every((x) => typeof x === "number" && Number.isFinite(x));
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The first fact on which `facts` (of some embeddings) differ from the embedding model a classifier was
 * trained on, as a message, or undefined when they agree. A fact the classifier records (not null) must
 * be stated and equal; the embedding size always.
 *
 * @param classifier The classifier.
 * @param facts What the embeddings state (missing or null: not stated).
 * @returns The mismatch, e.g. `preset: expected "derm", got "bit"`.
 */
export function classifierIdentityMismatch(
  classifier: Classifier,
  facts: Partial<Record<keyof EmbeddingIdentity, string | number | null>>,
): string | undefined {
  for (const key of IDENTITY_FACTS) {
    const want = classifier.embedding[key];
    if (want === null) continue;
    const got = facts[key];
    if (got === undefined || got === null || String(got) !== String(want)) {
      return `${key}: expected ${JSON.stringify(want)}, got ${
        got === undefined || got === null ? "not stated" : JSON.stringify(got)
      }`;
    }
  }
  return undefined;
}

/** Options of {@linkcode applyClassifier}. */
export interface ApplyClassifierOptions {
  /** The facts of the embedding model that made the embeddings: checked against the classifier's. */
  identity?: Partial<Record<keyof EmbeddingIdentity, string | number | null>>;
}

/**
 * Class probabilities of every head for each embedding.
 *
 * @param classifier A parsed classifier.
 * @param embeddings Rows of D values.
 * @param options The embedding model's facts, to refuse another model's embeddings.
 * @returns One entry per head.
 * @throws {TypeError} When an embedding is not D long or not finite, or the facts differ.
 * @example
 * ```ts
 * const [head] = applyClassifier(classifier, [embedding], { identity: { embedding_size: 6144, preset: "derm" } });
 * console.log(head.classes, head.probabilities[0]);
 * ```
 */
export function applyClassifier(
  classifier: Classifier,
  embeddings: readonly ArrayLike<number>[],
  options: ApplyClassifierOptions = {},
): HeadProbabilities[] {
  const d = classifier.embedding.embedding_size;
  if (options.identity) {
    const mismatch = classifierIdentityMismatch(classifier, options.identity);
    if (mismatch) {
      throw new TypeError(`Cannot apply the classifier to these embeddings: another model's (${mismatch})`);
    }
  }
  embeddings.forEach((x, i) => {
    if (x.length !== d) {
      throw new TypeError(
        `Cannot apply the classifier to embedding ${i}: expected ${d} values, got ${x.length}`,
      );
    }
    for (let j = 0; j < d; j++) {
      if (!Number.isFinite(x[j])) {
        throw new TypeError(`Cannot apply the classifier to embedding ${i}: value ${j} is ${x[j]}`);
      }
    }
  });
  return classifier.heads.map((head) => {
    const model = headToLinearModel(head);
    const probabilities = embeddings.map((x) => linearProbabilities(model, x));
    return {
      label: head.label,
      classes: [...head.classes],
      probabilities,
      predicted: probabilities.map((p) => head.classes[argmax(p)]),
    };
  });
}
