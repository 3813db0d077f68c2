/**
 * A classifier (`deno task probe --out classifier.json`, `models/classifier.ts`) in `deno task serve`:
 * checked once against the loaded model (a classifier trained on another model's embeddings is refused at
 * startup), then applied to every embedding. A prediction carries `"scores": {"<class>": probability}` of
 * the first head; a classifier with more than one head (several label columns) adds
 * `"scores_by_head": {"<label>": {"<class>": probability}}` with every head, the first included.
 * @module
 */
import {
  applyClassifier,
  type Classifier,
  classifierIdentityMismatch,
  type EmbeddingIdentity,
} from "../models/classifier.ts";
import type { ModelFacts } from "../engine/model.ts";

/** What a prediction gains from the classifier. */
export interface Scores {
  /** The first head: class → probability. */
  readonly scores: Record<string, number>;
  /** With more than one head: label → class → probability. */
  readonly scores_by_head?: Record<string, Record<string, number>>;
}

/**
 * The identity the loaded model's embeddings have, as `deno task embed` states it in its outputs.
 *
 * @param facts The embedder's facts.
 * @param model The `--weights` or `--model` value (or `--model-name`).
 */
export function servedIdentity(facts: ModelFacts, model: string): EmbeddingIdentity {
  return {
    model,
    architecture: facts.architecture,
    preset: facts.preset,
    input_size: facts.size,
    embedding_size: facts.embeddingSize,
  };
}

/**
 * Refuses a classifier trained on another model's embeddings.
 *
 * @param classifier The parsed classifier.
 * @param name Its file, for the message.
 * @param identity The served model's ({@linkcode servedIdentity}).
 * @throws {TypeError} Naming the first fact that differs.
 */
export function checkClassifier(classifier: Classifier, name: string, identity: EmbeddingIdentity): void {
  const mismatch = classifierIdentityMismatch(classifier, identity);
  if (mismatch) {
    throw new TypeError(
      `Cannot serve classifier "${name}" with model "${identity.model}": it was trained on another model's ` +
        `embeddings (${mismatch})`,
    );
  }
}

/**
 * The scores of one embedding.
 *
 * @param classifier The classifier (already checked).
 * @param embedding One embedding.
 * @returns `scores`, and `scores_by_head` for a classifier of several heads.
 */
export function embeddingScores(classifier: Classifier, embedding: ArrayLike<number>): Scores {
  const heads = applyClassifier(classifier, [embedding]);
  const table = (h: (typeof heads)[number]) =>
    Object.fromEntries(h.classes.map((c, k) => [c, h.probabilities[0][k]]));
  if (heads.length === 1) return { scores: table(heads[0]) };
  return {
    scores: table(heads[0]),
    scores_by_head: Object.fromEntries(heads.map((h) => [h.label, table(h)])),
  };
}
