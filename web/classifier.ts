/**
 * The page's linear probe: the `classifier.json` that `deno task probe` writes, read and applied by
 * `models/classifier.ts` (the one format and the one implementation; this file only picks the head the page
 * shows and says what differs from the loaded model).
 *
 * The page shows one head (one label column): the first, or the one named by `?head=LABEL`. Its scores are
 * `linearProbabilities` of that head: sigmoid for two classes, softmax for more, after the head's
 * standardisation, in float64, as scikit-learn's `predict_proba`.
 *
 * This module is browser compatible.
 * @module
 */
import {
  type Classifier as ClassifierFile,
  type ClassifierHead,
  type EmbeddingIdentity,
  headToLinearModel,
  type LinearModel,
  linearProbabilities,
  parseClassifier as parseClassifierFile,
} from "../models/classifier.ts";

/** A classifier file with the head the page shows. */
export interface Classifier {
  /** The whole file, as `models/classifier.ts` reads it. */
  readonly file: ClassifierFile;
  /** The head shown. */
  readonly head: ClassifierHead;
  /** Its classes, in score order. */
  readonly classes: readonly string[];
  /** The embedding model it was trained on. */
  readonly model: EmbeddingIdentity;
  /** The head in computing form. */
  readonly linear: LinearModel;
}

/**
 * Reads a `classifier.json` (its text or parsed value) and picks a head.
 *
 * @param json The file's text, or its parsed value.
 * @param file Its name, for messages.
 * @param label The head to show (its label column); the first when omitted.
 * @returns The classifier.
 * @throws {TypeError} For text that is not JSON, a file that is not a classifier (naming the field), or a
 *   label it has no head for.
 * @example
 * ```ts
 * const c = parseClassifier(await (await fetch("classifier.json")).text(), "classifier.json");
 * ```
 */
export function parseClassifier(json: unknown, file = "classifier.json", label?: string): Classifier {
  if (typeof json === "string") {
    try {
      json = JSON.parse(json);
    } catch (e) {
      throw new TypeError(`Cannot read classifier "${file}": not JSON (${(e as Error).message})`);
    }
  }
  const parsed = parseClassifierFile(json, file);
  const head = label === undefined ? parsed.heads[0] : parsed.heads.find((h) => h.label === label);
  if (!head) {
    throw new TypeError(
      `Cannot read classifier "${file}": no head for label "${label}" (it has ${
        parsed.heads.map((h) => `"${h.label}"`).join(", ")
      })`,
    );
  }
  return {
    file: parsed,
    head,
    classes: head.classes,
    model: parsed.embedding,
    linear: headToLinearModel(head),
  };
}

/**
 * The class probabilities of one embedding under the shown head.
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
  return linearProbabilities(classifier.linear, embedding);
}

/**
 * What differs between the model a classifier was trained on and the one loaded: one line per mismatch
 * (the scores are meaningless when the embedding size differs, doubtful when anything else does). Facts the
 * classifier does not record (null) are not compared.
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
  if (m.architecture !== null && m.architecture !== loaded.architecture) {
    out.push(`architecture: trained on "${m.architecture}", loaded "${loaded.architecture}"`);
  }
  if (m.preset !== null && m.preset !== loaded.preset) {
    out.push(`preset: trained on ${m.preset}, loaded ${loaded.preset}`);
  }
  if (m.input_size !== null && m.input_size !== loaded.size) {
    out.push(`input size: trained on ${m.input_size}, loaded ${loaded.size}`);
  }
  return out;
}
