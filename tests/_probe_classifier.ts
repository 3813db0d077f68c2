/**
 * Classifiers made from the probe fixtures (`testdata/probe/`): scikit-learn's logistic regressions
 * (`expected_sklearn.json`, `logreg_C1`) written as `classifier.json`, with the embeddings they were fitted
 * on (`embeddings.safetensors`: `procedural:tiny-derm`, preset derm, size 64) and scikit-learn's
 * `predict_proba` of the test rows, so that the page's and the library's scores can be checked against
 * scikit-learn itself.
 * @module
 */
import { parseReference } from "./_fixtures.ts";
import { readTestdata, readTestdataJson } from "./_testdata.ts";

/** The probe's label columns. */
export type ProbeLabel = "benign_malignant" | "age_group";

interface SklearnLabel {
  classes: string[];
  logreg_C1: { test_paths: string[]; prob: number[][]; coef: number[][]; intercept: number[] };
}

/** The weights and settings the probe's embeddings were made with. */
export const PROBE_MODEL = { weights: "procedural:tiny-derm", preset: "derm", size: 64 } as const;

/** The architecture summary output files state for {@linkcode PROBE_MODEL}. */
export const PROBE_ARCHITECTURE = "BiT units 2/1/1/1 widths 128/256/512/1024 stem 64";

/**
 * The `classifier.json` of scikit-learn's fit for `label` (format `derm-webgpu-classifier`, one head, no
 * standardisation), as `deno task probe` writes it: what the page and `models/classifier.ts` read.
 */
export function probeClassifierJson(label: ProbeLabel): Record<string, unknown> {
  const s = readTestdataJson<Record<ProbeLabel, SklearnLabel>>("probe/expected_sklearn.json")[label];
  return {
    format: "derm-webgpu-classifier",
    version: 1,
    embedding: {
      model: PROBE_MODEL.weights,
      architecture: PROBE_ARCHITECTURE,
      preset: PROBE_MODEL.preset,
      input_size: PROBE_MODEL.size,
      embedding_size: 1024,
    },
    training: { kind: "logistic", C: 1, source: "scikit-learn expected_sklearn.json logreg_C1" },
    heads: [{
      label,
      classes: s.classes,
      weights: s.logreg_C1.coef,
      intercepts: s.logreg_C1.intercept,
      standardization: null,
    }],
  };
}

/** scikit-learn's `predict_proba` of the test rows of `label`, by image file name. */
export function sklearnProbabilities(label: ProbeLabel): Map<string, number[]> {
  const s = readTestdataJson<Record<ProbeLabel, SklearnLabel>>("probe/expected_sklearn.json")[label];
  return new Map(s.logreg_C1.test_paths.map((p, i) => [p, s.logreg_C1.prob[i]]));
}

/** The probe's input embeddings (float32 values as float64), by image file name. */
export function probeEmbeddings(): Map<string, Float64Array> {
  const ref = parseReference(readTestdata("probe/embeddings.safetensors"), "probe/embeddings.safetensors");
  const paths: string[] = JSON.parse(ref.metadata.paths);
  const all = ref.tensors.get("embeddings")!;
  const d = all.shape[1];
  return new Map(paths.map((p, i) => [p, all.data.slice(i * d, (i + 1) * d)]));
}
