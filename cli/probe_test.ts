/**
 * `deno task probe` end to end, as a subprocess on testdata/probe: scikit-learn's figures, kNN, K-fold
 * with groups, multi-label, shots and plot, the classifier file written and applied, and bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseCsv } from "./inputs.ts";
import { writeOutput } from "./outputs.ts";
import { readEmbeddings } from "./probe_data.ts";
import { withTempDir } from "../tests/_temp.ts";
import { testdataPath } from "../tests/_testdata.ts";
import { probeFixture } from "../tests/_probe_fixture.ts";

const PROBE = new URL("./probe.ts", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;
const EMB = testdataPath("probe/embeddings.safetensors");
const LABELS = testdataPath("probe/labels.csv");

async function probe(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", PROBE, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

function readCsv(text: string): Record<string, string>[] {
  const [head, ...rows] = parseCsv(text).filter((r) => r.length > 1);
  return rows.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i]])));
}

Deno.test("probe --split-column prints scikit-learn's metrics and writes its probabilities, binary and multinomial", async () => {
  const expected = probeFixture().expected;
  await withTempDir(async (dir) => {
    for (const column of ["benign_malignant", "age_group"] as const) {
      const e = expected[column];
      const predictions = join(dir, `${column}.csv`);
      const r = await probe([
        "--embeddings",
        EMB,
        "--labels",
        LABELS,
        "--label",
        column,
        "--split-column",
        "split",
        "--json",
        "--predictions",
        predictions,
        "--quiet",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const json = JSON.parse(r.stdout);
      assert.deepEqual(json.classes, e.classes);
      for (const name of ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc"] as const) {
        assert.ok(Math.abs(json.metrics[name] - e.logreg_C1.metrics[name]) <= 1e-3, `${column} ${name}`);
      }
      assert.equal(json.folds.length, 1);
      assert.equal(json.rows.train, e.n_train);
      assert.equal(json.rows.test, e.n_test);
      const rows = readCsv(await Deno.readTextFile(predictions));
      assert.deepEqual(Object.keys(rows[0]), [
        "path",
        "label",
        "predicted",
        ...e.classes.map((c) => `prob_${c}`),
      ]);
      assert.equal(rows.length, e.n_test);
      const byPath = new Map(rows.map((x) => [x.path, x]));
      e.logreg_C1.test_paths.forEach((p, t) => {
        e.classes.forEach((c, k) => {
          assert.ok(
            Math.abs(Number(byPath.get(p)![`prob_${c}`]) - e.logreg_C1.prob[t][k]) <= 1e-3,
            `${p} ${c}`,
          );
        });
      });
    }
  });
});

Deno.test("probe --model knn --k 5 predicts what scikit-learn's KNeighborsClassifier predicts", async () => {
  const expected = probeFixture().expected;
  await withTempDir(async (dir) => {
    for (const column of ["benign_malignant", "age_group"] as const) {
      const predictions = join(dir, "p.csv");
      const r = await probe([
        "--embeddings",
        EMB,
        "--labels",
        LABELS,
        "--label",
        column,
        "--split-column",
        "split",
        "--model",
        "knn",
        "--k",
        "5",
        "--predictions",
        predictions,
        "--quiet",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const byPath = new Map(readCsv(await Deno.readTextFile(predictions)).map((x) => [x.path, x.predicted]));
      const e = expected[column];
      assert.deepEqual(e.logreg_C1.test_paths.map((p) => byPath.get(p)), e.knn_cosine_k5.predicted, column);
    }
  });
});

Deno.test("probe --group-column keeps every patient in one fold, with multi-label columns and out-of-fold predictions", async () => {
  await withTempDir(async (dir) => {
    // A patient per 3 consecutive images.
    const table = parseCsv(await Deno.readTextFile(LABELS)).filter((r) => r.length > 1);
    const lines = [[...table[0], "patient"].join(",")];
    table.slice(1).forEach((r, i) => lines.push([...r, `p${Math.floor(i / 3)}`].join(",")));
    const labels = join(dir, "labels.csv");
    await Deno.writeTextFile(labels, lines.join("\n") + "\n");
    await Deno.copyFile(EMB, join(dir, "e.safetensors"));
    const predictions = join(dir, "oof.csv");
    const r = await probe([
      "--embeddings",
      join(dir, "e.safetensors"),
      "--labels",
      labels,
      "--label",
      "benign_malignant,age_group",
      "--group-column",
      "patient",
      "--folds",
      "4",
      "--seed",
      "3",
      "--predictions",
      predictions,
      "--json",
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.deepEqual(json.labels.map((x: { label: string }) => x.label), ["benign_malignant", "age_group"]);
    assert.equal(json.labels[0].folds.length, 4);
    assert.match(json.labels[0].evaluation, /stratified group 4-fold, seed 3/);
    for (const name of ["accuracy", "macro_f1"]) {
      const mean = (json.labels[0].metrics[name] + json.labels[1].metrics[name]) / 2;
      assert.ok(Math.abs(json.metrics[name] - mean) < 1e-12);
    }
    const rows = readCsv(await Deno.readTextFile(predictions));
    assert.deepEqual(Object.keys(rows[0]), [
      "path",
      "column",
      "label",
      "predicted",
      "prob_benign",
      "prob_malignant",
      "prob_40to59",
      "prob_60plus",
      "prob_under40",
      "fold",
    ]);
    const patient = new Map(lines.slice(1).map((l) => [l.split(",")[0], l.split(",").at(-1)!]));
    for (const column of ["benign_malignant", "age_group"]) {
      const mine = rows.filter((x) => x.column === column);
      assert.equal(mine.length, column === "age_group" ? 205 : 441); // every labelled row once
      const foldOf = new Map<string, string>();
      for (const x of mine) {
        const p = patient.get(x.path)!;
        if (foldOf.has(p)) assert.equal(x.fold, foldOf.get(p), `patient ${p} in two folds`);
        foldOf.set(p, x.fold);
      }
      if (column === "age_group") assert.ok(mine.every((x) => x.prob_benign === ""));
    }
  });
});

Deno.test("probe --shots draws the data-efficiency curve and --plot writes it", async () => {
  await withTempDir(async (dir) => {
    const plot = join(dir, "curve.svg");
    const r = await probe([
      "--embeddings",
      EMB,
      "--labels",
      LABELS,
      "--label",
      "benign_malignant",
      "--split-column",
      "split",
      "--shots",
      "1,5,all",
      "--shot-seeds",
      "3",
      "--plot",
      plot,
      "--json",
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.deepEqual(json.shots.map((p: { shots: unknown }) => p.shots), [1, 5, "all"]);
    assert.deepEqual(json.shots.map((p: { runs: number }) => p.runs), [3, 3, 1]);
    assert.equal(json.shots[1].rows_per_class, 5);
    // "all" is the split's own model: the same metrics as the evaluation
    assert.ok(Math.abs(json.shots[2].mean.macro_f1 - json.metrics.macro_f1) < 1e-12);
    const svg = await Deno.readTextFile(plot);
    assert.match(svg, /<polyline /);
    assert.equal((svg.match(/<circle /g) ?? []).length, 3);
  });
});

Deno.test("probe --out writes a classifier that --classifier applies with the same probabilities, and refuses another model's embeddings", async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, "classifier.json");
    const trained = join(dir, "trained.csv");
    let r = await probe([
      "--embeddings",
      EMB,
      "--labels",
      LABELS,
      "--label",
      "age_group",
      "--split-column",
      "split",
      "--standardize",
      "--out",
      out,
      "--predictions",
      trained,
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const classifier = JSON.parse(await Deno.readTextFile(out));
    assert.equal(classifier.format, "derm-webgpu-classifier");
    assert.equal(classifier.embedding.embedding_size, 1024);
    assert.match(classifier.embedding.model, /^procedural:tiny-derm/);
    assert.deepEqual(classifier.heads[0].classes, ["40to59", "60plus", "under40"]);
    assert.equal(classifier.heads[0].weights.length, 3);
    assert.equal(classifier.heads[0].standardization.mean.length, 1024);
    assert.equal(classifier.training.rows.age_group, 172);
    const applied = join(dir, "applied.csv");
    r = await probe([
      "--embeddings",
      EMB,
      "--classifier",
      out,
      "--labels",
      LABELS,
      "--predictions",
      applied,
      "--json",
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.equal(json.rows.labelled, 205);
    const a = new Map(readCsv(await Deno.readTextFile(applied)).map((x) => [x.path, x]));
    for (const row of readCsv(await Deno.readTextFile(trained))) {
      for (const c of ["40to59", "60plus", "under40"]) {
        assert.ok(Math.abs(Number(a.get(row.path)![`prob_${c}`]) - Number(row[`prob_${c}`])) < 1e-12);
      }
    }
    // The same vectors stated as another model's: refused, exit 1.
    const e = await readEmbeddings(EMB);
    const other = join(dir, "other.safetensors");
    await writeOutput(
      other,
      e.paths.map((path, i) => ({
        path,
        hash: "",
        metadata: {},
        position: i,
        embedding: e.data.slice(i * 1024, (i + 1) * 1024),
      })),
      {
        model: "google/derm-foundation",
        architecture: "BiT",
        preset: "derm",
        size: 448,
        embeddingSize: 1024,
        engine: "test",
      },
    );
    r = await probe(["--embeddings", other, "--classifier", out]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /the embeddings come from another model \(model: expected "procedural:tiny-derm.*got "google\/derm-foundation"\)/,
    );
    // Labels the classifier does not know: exit 1.
    const odd = join(dir, "odd.csv");
    await Deno.writeTextFile(odd, `file,age_group\n${e.paths[0]},over90\n`);
    await Deno.copyFile(EMB, join(dir, "e.safetensors"));
    r = await probe(["--embeddings", join(dir, "e.safetensors"), "--classifier", out, "--labels", odd]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /labels "over90" are not classes of the classifier \(40to59, 60plus, under40\)/);
  });
});

Deno.test("probe gives exit code 2 for a bad command line, naming the problem", async () => {
  const cases: [string[], RegExp][] = [
    [["--labels", LABELS, "--label", "x"], /--embeddings is required/],
    [["--embeddings", EMB, "--label", "x"], /--labels is required/],
    [["--embeddings", EMB, "--labels", LABELS], /--label is required/],
    [
      ["--embeddings", EMB, "--labels", LABELS, "--label", "a", "--model", "svm"],
      /--model must be "logreg" or "knn", got "svm"/,
    ],
    [
      ["--embeddings", EMB, "--labels", LABELS, "--label", "a", "--C=-1"],
      /--C must be a number >= 0, got "-1"/,
    ],
    [
      ["--embeddings", EMB, "--labels", LABELS, "--label", "a", "--shots", "0,5"],
      /--shots must list integers >= 1 or "all", got "0"/,
    ],
    [
      ["--embeddings", EMB, "--labels", LABELS, "--label", "a", "--model", "knn", "--out", "c.json"],
      /--out writes a linear classifier/,
    ],
    [
      ["--embeddings", EMB, "--labels", LABELS, "--label", "a", "--plot", "c.svg"],
      /--plot draws the --shots curve/,
    ],
    [
      ["--embeddings", EMB, "--labels", LABELS, "--label", "a", "--split-column", "s", "--folds", "3"],
      /exclude each other/,
    ],
    [["--embeddings", EMB, "--labels", LABELS, "--label", "a", "--bogus"], /bogus/],
    [
      ["--embeddings", EMB, "--classifier", "c.json", "--shots", "5"],
      /--shots is not used with --classifier/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = await probe(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});

Deno.test("probe gives exit code 1 for bad data, naming the file and the problem", async () => {
  await withTempDir(async (dir) => {
    const badLabels = join(dir, "labels.csv");
    await Deno.writeTextFile(badLabels, "file,dx\nnot_there.jpg,benign\nalso_not.jpg,malignant\n");
    const nanFile = join(dir, "nan.npy");
    const e = await readEmbeddings(EMB);
    const constant = join(dir, "constant.csv");
    await Deno.copyFile(EMB, join(dir, "e.safetensors"));
    await Deno.writeTextFile(
      constant,
      `file,dx\n${e.paths.slice(0, 20).map((p) => `${p},nevus`).join("\n")}\n`,
    );
    const rows = e.paths.slice(0, 4).map((path, i) => ({
      path,
      hash: "",
      metadata: {},
      position: i,
      embedding: i === 2 ? new Float32Array(1024).fill(NaN) : e.data.slice(i * 1024, (i + 1) * 1024),
    }));
    await writeOutput(nanFile, rows, {
      model: "m",
      architecture: "a",
      preset: "derm",
      size: 64,
      embeddingSize: 1024,
      engine: "t",
    });
    const cases: [string[], RegExp][] = [
      [
        ["--embeddings", EMB, "--labels", LABELS, "--label", "diagnosis"],
        /--label "diagnosis".*has no such column \(columns: file, benign_malignant, age_group, split\)/,
      ],
      [
        ["--embeddings", EMB, "--labels", LABELS, "--label", "age_group", "--split-column", "fold"],
        /--split-column "fold".*no such column/,
      ],
      [["--embeddings", EMB, "--labels", badLabels, "--label", "dx"], /no image path is in both/],
      [
        ["--embeddings", nanFile, "--labels", LABELS, "--label", "benign_malignant"],
        /1 row holds NaN or infinity: ISIC_0000103.jpg/,
      ],
      [
        ["--embeddings", join(dir, "missing.npy"), "--labels", LABELS, "--label", "x"],
        /missing.npy": no such file/,
      ],
      [
        ["--embeddings", join(dir, "e.safetensors"), "--labels", constant, "--label", "dx"],
        /expected two or more classes, got only "nevus"/,
      ],
      [["--embeddings", EMB, "--classifier", join(dir, "none.json")], /Cannot read classifier/],
    ];
    for (const [args, message] of cases) {
      const r = await probe([...args, "--quiet"]);
      assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});
