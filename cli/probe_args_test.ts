import assert from "node:assert/strict";
import { HELP, modelFacts, parseOptions, UsageError } from "./probe_args.ts";

const BASE = ["--embeddings", "e.npy", "--labels", "l.csv", "--label", "dx"];

Deno.test("parseOptions() fills the defaults of a training run", () => {
  const o = parseOptions(BASE);
  assert.notEqual(o, "help");
  if (o === "help") return;
  assert.deepEqual(o.label, ["dx"]);
  assert.deepEqual(o.spec, { kind: "logreg", C: 1, standardize: false, tol: 1e-8, maxIterations: 10_000 });
  assert.equal(o.folds, 5);
  assert.equal(o.seed, 0);
  assert.equal(o.shotSeeds, 5);
  assert.equal(o.curveMetric, "macro_f1");
  assert.equal(o.shots, undefined);
});

Deno.test("parseOptions() reads label lists, shots, kNN and logreg settings", () => {
  const o = parseOptions([
    ...BASE.slice(0, 4),
    "--label",
    "a, b",
    "--shots",
    "1,2,all",
    "--model",
    "knn",
    "--k",
    "7",
    "--seed",
    "4",
  ]);
  if (o === "help") throw new Error("help");
  assert.deepEqual(o.label, ["a", "b"]);
  assert.deepEqual(o.shots, [1, 2, "all"]);
  assert.deepEqual(o.spec, { kind: "knn", k: 7, seed: 4 });
  const l = parseOptions([...BASE, "--C", "0.5", "--standardize", "--tol", "1e-6", "--max-iter", "50"]);
  if (l === "help") throw new Error("help");
  assert.deepEqual(l.spec, { kind: "logreg", C: 0.5, standardize: true, tol: 1e-6, maxIterations: 50 });
  assert.deepEqual(modelFacts(l.spec).kind, "logreg");
});

Deno.test("parseOptions() refuses contradictory or malformed options with a UsageError", () => {
  const bad: [string[], RegExp][] = [
    [[...BASE.slice(0, 4), "--label", "dx,dx"], /--label names a column twice: "dx,dx"/],
    [[...BASE, "--k", "3"], /--k is an option of --model knn/],
    [[...BASE, "--model", "knn", "--C", "2"], /options of --model logreg/],
    [[...BASE, "--folds", "1"], /--folds must be an integer >= 2/],
    [
      [...BASE, "--curve-metric", "f2"],
      /--curve-metric must be one of accuracy, balanced_accuracy, macro_f1, roc_auc/,
    ],
    [[...BASE, "--out", "c.txt"], /--out must end in .json/],
    [[...BASE, "--shots", "5", "--plot", "c.png"], /--plot must end in .svg/],
    [["--embeddings", "e.npy", "--classifier", "c.json", "--label", "dx"], /--label needs --labels/],
    [[...BASE, "extra"], /unexpected argument "extra"/],
  ];
  for (const [args, message] of bad) {
    assert.throws(
      () => parseOptions(args),
      (e) => e instanceof Error && message.test(e.message),
      args.join(" "),
    );
  }
  assert.throws(() => parseOptions([...BASE, "--tol", "0"]), UsageError);
});

Deno.test("HELP lists every flag parseOptions accepts", async () => {
  const source = await Deno.readTextFile(new URL("./probe_args.ts", import.meta.url));
  const flags = [...source.matchAll(/^\s+"?([a-zA-Z][a-zA-Z-]*)"?: \{ type: "(?:string|boolean)"/gm)].map((
    m,
  ) => m[1]);
  assert.ok(flags.length >= 20, `${flags.length} flags found`);
  for (const f of flags) assert.match(HELP, new RegExp(`--${f}\\b`), `--${f} in --help`);
  assert.equal(parseOptions(["--help"]), "help");
});
