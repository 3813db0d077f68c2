/**
 * testdata/probe read plainly, for the probe's tests: the embeddings matrix, the labels, and
 * scikit-learn's results (testdata/probe/README.md), with the train and test rows of a label column.
 * @module
 */
import { parseCsv } from "../cli/inputs.ts";
import { readTestdata, readTestdataJson, readTestdataText } from "./_testdata.ts";

/** What `expected_sklearn.json` holds for one label column. */
export interface SklearnExpected {
  classes: string[];
  n_train: number;
  n_test: number;
  logreg_C1: {
    test_paths: string[];
    prob: number[][];
    metrics: Record<"accuracy" | "balanced_accuracy" | "macro_f1" | "roc_auc", number>;
    coef: number[][];
    intercept: number[];
  };
  knn_cosine_k5: { predicted: string[] };
}

/** The fixture, parsed. */
export interface ProbeFixture {
  /** [N, D] float32. */
  data: Float32Array;
  /** D. */
  d: number;
  /** File name of each row. */
  paths: string[];
  /** Label CSV rows by file name: column -> value. */
  labels: Map<string, Record<string, string>>;
  /** scikit-learn's results by column. */
  expected: Record<"benign_malignant" | "age_group", SklearnExpected>;
}

/** Reads testdata/probe. */
export function probeFixture(): ProbeFixture {
  const bytes = readTestdata("probe/embeddings.safetensors");
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const [rows, d] = header.embeddings.shape;
  const [begin, end] = header.embeddings.data_offsets;
  const data = new Float32Array(bytes.slice(8 + n + begin, 8 + n + end).buffer);
  if (data.length !== rows * d) throw new Error("testdata/probe/embeddings.safetensors: unexpected size");
  const table = parseCsv(readTestdataText("probe/labels.csv")).filter((r) => r.length > 1);
  const head = table[0];
  const labels = new Map(
    table.slice(1).map((r) => [r[0], Object.fromEntries(head.map((h, i) => [h, r[i]]))]),
  );
  return {
    data,
    d,
    paths: JSON.parse(header.__metadata__.paths),
    labels,
    expected: readTestdataJson("probe/expected_sklearn.json"),
  };
}

/** Embedding rows and class indices of the labelled `train` rows of `column`, and the expected test rows. */
export function fixtureSplit(f: ProbeFixture, column: "benign_malignant" | "age_group") {
  const e = f.expected[column];
  const train: number[] = [];
  const y: number[] = [];
  f.paths.forEach((p, i) => {
    const row = f.labels.get(p)!;
    if (row[column] !== "" && row.split === "train") {
      train.push(i);
      y.push(e.classes.indexOf(row[column]));
    }
  });
  const test = e.logreg_C1.test_paths.map((p) => f.paths.indexOf(p));
  const testY = e.logreg_C1.test_paths.map((p) => e.classes.indexOf(f.labels.get(p)![column]));
  return { train, y, test, testY, expected: e };
}
