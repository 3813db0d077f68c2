/**
 * What the bench knows about each op, one entry per op keyed by its name in the lowering table: a readable
 * label of a node's shape, the FLOPs and compulsory bytes of one run, seeded data, and the float64
 * reference (`kernels/*_ref.ts`) the kernel is checked against before it is timed. Adding an op to the bench
 * is adding an entry here (and, for peers, in `onnx_export.ts` and `peers_tfjs.ts`).
 *
 * Figures per node (N, H, W, C from its input, OH, OW from its output):
 * - conv2d: FLOP = 2·N·OH·OW·Cout·KH·KW·Cin (Cin of the input tensor, zero padding channels included: the
 *   work the kernel does); bytes = 4·(N·H·W·Cin + KH·KW·Cin·Cout + N·OH·OW·Cout (+ Cout bias) (+ N·OH·OW·Cout
 *   residual read, in-place nodes)).
 * - group_norm (statistics + apply, ReLU when the node has it): FLOP = 6·N·H·W·C (3 for the sums, 3 to
 *   apply); bytes = 12·N·H·W·C (x read twice, y written once).
 * - max_pool: FLOP = N·OH·OW·C·K² comparisons; bytes = 4·(N·H·W·C + N·OH·OW·C).
 * - global_mean_pool: FLOP = N·H·W·C; bytes = 4·(N·H·W·C + N·C).
 * - linear (M rows of Din → Dout; GELU and the residual add not counted as FLOP): FLOP = 2·M·Din·Dout;
 *   bytes = 4·(M·Din + Din·Dout + Dout bias + M·Dout (+ M·Dout residual read)).
 * - layer_norm (R rows of D): FLOP = 8·R·D (the lowering's count); bytes = 4·(2·R·D + 2·D).
 * - attention (qkv [N, T, 3D] → [N, T, D]): FLOP = 4·N·T²·D (q·k and p·v); bytes = 4·(3·N·T·D + N·T·D).
 * - vit_tokens (patches [N, P, D] → [N, 1 + P, D]): FLOP = N·T·D adds; bytes = 4·(N·P·D + D + T·D + N·T·D).
 * - token_gather (one token of [N, T, D] into a slot of [N, k, D]): FLOP = 0; bytes = 4·2·N·D.
 * @module
 */
import { flagAttr, type GraphNode, numberAttr, stringAttr } from "../engine/graph.ts";
import { numel, type Shape } from "../engine/kernel.ts";
import { conv2dRef } from "../kernels/conv2d_ref.ts";
import { groupNormStatsRef } from "../kernels/group_norm_stats_ref.ts";
import { groupNormApplyRef } from "../kernels/group_norm_apply_ref.ts";
import { maxPoolRef } from "../kernels/max_pool_ref.ts";
import type { MaxPoolShape } from "../kernels/max_pool.ts";
import { globalMeanPoolRef } from "../kernels/global_mean_pool_ref.ts";
import type { LinearShape } from "../kernels/linear.ts";
import { linearRef } from "../kernels/linear_ref.ts";
import { layerNormRef } from "../kernels/layer_norm_ref.ts";
import type { AttentionShape } from "../kernels/attention.ts";
import { attentionRef } from "../kernels/attention_ref.ts";
import { vitTokensRef } from "../kernels/vit_tokens_ref.ts";
import type { TokenGatherShape } from "../kernels/token_gather.ts";
import { tokenGatherRef } from "../kernels/token_gather_ref.ts";
import { randomF32 } from "../tests/_random.ts";

/** One node with the shapes it sees (a one-node graph's node: inputs `x0`.., output `y`). */
export interface NodeCase {
  /** The node. */
  readonly node: GraphNode;
  /** Shapes of `node.inputs`. */
  readonly inputs: readonly Shape[];
  /** Shape of `node.output`. */
  readonly output: Shape;
}

/** Seeded values of a case's tensors. */
export interface CaseData {
  /** One array per node input. */
  readonly inputs: readonly Float32Array<ArrayBuffer>[];
  /** The output's value before the node runs (in-place nodes: the residual). */
  readonly prior?: Float32Array<ArrayBuffer>;
  /** Weights by role. */
  readonly weights: Readonly<Record<string, Float32Array<ArrayBuffer>>>;
}

/** The reference at `index` (flat output positions; all of them when absent). */
export interface ReferenceSample {
  readonly index?: Int32Array;
  readonly values: Float64Array;
  /** How much of the output it covers, e.g. `all` or `rows 0,1,13,14,26,27 of 28`. */
  readonly coverage: string;
}

/** The bench's entry of one op. */
export interface OpBench {
  /** The op, its key in the lowering table. */
  readonly op: string;
  /** Readable shape, e.g. `conv 3x3/1 28x28x768 -> 28x28x768`. Equal labels are timed once. */
  label(c: NodeCase): string;
  /** `--quick` keeps the cheapest node of each group (e.g. `conv3x3/2`). */
  group(c: NodeCase): string;
  /** FLOP of one run (formula in the module doc). */
  flop(c: NodeCase): number;
  /** Compulsory bytes of one run (formula in the module doc). */
  bytes(c: NodeCase): number;
  /** Seeded weights by role, for the node's weight roles. */
  weights(c: NodeCase, seed: number): Record<string, Float32Array<ArrayBuffer>>;
  /**
   * The float64 reference on `data`: the whole output, or (when that costs more than `budgetFlop`) a
   * sample of it that still reaches every border.
   */
  reference(c: NodeCase, data: CaseData, budgetFlop: number): ReferenceSample;
}

function f64(x: Float32Array): Float64Array {
  return Float64Array.from(x);
}

function dims(s: Shape): string {
  return s.slice(1).join("x");
}

/** A conv2d node's attributes. */
export interface ConvAttrs {
  kh: number;
  kw: number;
  stride: number;
  pad: number;
  cout: number;
  relu: boolean;
  bias: boolean;
}

/** The conv2d attributes as `kernels/conv2d.ts` reads them. */
export function convAttrs(node: GraphNode): ConvAttrs {
  const kh = numberAttr(node, "kh", node.attrs.kernel as number | undefined);
  return {
    kh,
    kw: numberAttr(node, "kw", kh),
    stride: numberAttr(node, "stride", 1),
    pad: numberAttr(node, "pad", 0),
    cout: numberAttr(node, "cout"),
    relu: flagAttr(node, "relu"),
    bias: node.weights.bias !== undefined,
  };
}

/** Output rows checked when the whole conv reference is too dear: both borders and the middle. */
function sampleRows(oh: number): number[] {
  const mid = Math.floor(oh / 2);
  return [...new Set([0, 1, mid, mid + 1, oh - 2, oh - 1].filter((r) => r >= 0 && r < oh))].sort((a, b) =>
    a - b
  );
}

const conv2d: OpBench = {
  op: "conv2d",
  label(c) {
    const a = convAttrs(c.node);
    const k = a.kh === a.kw ? `${a.kh}x${a.kh}` : `${a.kh}x${a.kw}`;
    const epilogue = `${a.bias ? " +bias" : ""}${c.node.inPlace ? " +res" : ""}${a.relu ? " relu" : ""}`;
    return `conv ${k}/${a.stride} ${dims(c.inputs[0])} -> ${dims(c.output)}${epilogue}`;
  },
  group(c) {
    const a = convAttrs(c.node);
    return `conv${a.kh}x${a.kw}/${a.stride}`;
  },
  flop(c) {
    const a = convAttrs(c.node);
    const [n, oh, ow, cout] = c.output;
    return 2 * n * oh * ow * cout * a.kh * a.kw * c.inputs[0][3];
  },
  bytes(c) {
    const a = convAttrs(c.node);
    const cin = c.inputs[0][3];
    const out = numel(c.output);
    return 4 *
      (numel(c.inputs[0]) + a.kh * a.kw * cin * a.cout + out + (a.bias ? a.cout : 0) +
        (c.node.inPlace ? out : 0));
  },
  weights(c, seed) {
    const a = convAttrs(c.node);
    const fan = a.kh * a.kw * c.inputs[0][3];
    const bound = Math.sqrt(3 / fan); // unit-variance outputs
    const out: Record<string, Float32Array<ArrayBuffer>> = {
      weight: randomF32(fan * a.cout, seed + 1, -bound, bound),
    };
    if (a.bias) out.bias = randomF32(a.cout, seed + 2, -0.5, 0.5);
    return out;
  },
  reference(c, data, budgetFlop) {
    const a = convAttrs(c.node);
    const [n, h, w, cin] = c.inputs[0];
    const [, oh, ow, cout] = c.output;
    const shape = {
      n,
      h,
      w,
      cin,
      cout,
      kh: a.kh,
      kw: a.kw,
      stride: a.stride,
      pad: a.pad,
      accumulate: false,
      relu: a.relu,
    };
    const bias = data.weights.bias ? f64(data.weights.bias) : undefined;
    const weight = f64(data.weights.weight);
    if (conv2d.flop(c) <= budgetFlop) {
      const prior = data.prior ? f64(data.prior) : undefined;
      return { values: conv2dRef(f64(data.inputs[0]), weight, shape, prior, bias), coverage: "all" };
    }
    // Rows R of every image: each becomes an image of KH input rows with the zero padding written out
    // (rows above/below and P columns each side), convolved with pad 0.
    const rows = sampleRows(oh);
    const wp = w + 2 * a.pad;
    const x = data.inputs[0];
    const crop = new Float64Array(n * rows.length * a.kh * wp * cin);
    const prior = data.prior ? new Float64Array(n * rows.length * ow * cout) : undefined;
    const index = new Int32Array(n * rows.length * ow * cout);
    rows.forEach((r, j) => {
      for (let b = 0; b < n; b++) {
        const img = b * rows.length + j;
        for (let ky = 0; ky < a.kh; ky++) {
          const iy = r * a.stride - a.pad + ky;
          if (iy < 0 || iy >= h) continue;
          for (let ix = 0; ix < w; ix++) {
            const src = ((b * h + iy) * w + ix) * cin;
            const dst = ((img * a.kh + ky) * wp + ix + a.pad) * cin;
            for (let ci = 0; ci < cin; ci++) crop[dst + ci] = x[src + ci];
          }
        }
        for (let ox = 0; ox < ow; ox++) {
          for (let co = 0; co < cout; co++) {
            const at = ((b * oh + r) * ow + ox) * cout + co;
            const k = (img * ow + ox) * cout + co;
            index[k] = at;
            if (prior) prior[k] = data.prior![at];
          }
        }
      }
    });
    const values = conv2dRef(
      crop,
      weight,
      {
        ...shape,
        n: n * rows.length,
        h: a.kh,
        w: wp,
        pad: 0,
      },
      prior,
      bias,
    );
    return { index, values, coverage: `rows ${rows.join(",")} of ${oh}` };
  },
};

const groupNorm: OpBench = {
  op: "group_norm",
  label(c) {
    const groups = numberAttr(c.node, "groups");
    return `group_norm ${dims(c.inputs[0])}${groups === 32 ? "" : ` G${groups}`}${
      flagAttr(c.node, "relu") ? " relu" : ""
    }`;
  },
  group: () => "group_norm",
  flop: (c) => 6 * numel(c.inputs[0]),
  bytes: (c) => 12 * numel(c.inputs[0]),
  weights(c, seed) {
    const ch = c.inputs[0][3];
    return { gamma: randomF32(ch, seed + 2, 0.75, 1.25), beta: randomF32(ch, seed + 3, -0.25, 0.25) };
  },
  reference(c, data) {
    const [n, h, w, ch] = c.inputs[0];
    const groups = numberAttr(c.node, "groups");
    const shape = { n, hw: h * w, c: ch, groups, eps: numberAttr(c.node, "eps") };
    const x = f64(data.inputs[0]);
    const stats = groupNormStatsRef(x, shape);
    const values = groupNormApplyRef(x, stats, f64(data.weights.gamma), f64(data.weights.beta), {
      ...shape,
      relu: flagAttr(c.node, "relu"),
    });
    return { values, coverage: "all" };
  },
};

/** The max_pool attributes and input shape as `kernels/max_pool.ts` reads them. */
export function poolShape(c: Pick<NodeCase, "node" | "inputs">): MaxPoolShape {
  const [n, h, w, ch] = c.inputs[0];
  const padValue = stringAttr(c.node, "padValue");
  if (padValue !== "-inf" && padValue !== "zero") {
    throw new TypeError(
      `Cannot bench "${c.node.name}": padValue must be "-inf" or "zero", got "${padValue}"`,
    );
  }
  return {
    n,
    h,
    w,
    c: ch,
    k: numberAttr(c.node, "kernel"),
    stride: numberAttr(c.node, "stride"),
    pad: numberAttr(c.node, "pad", 0),
    padValue: padValue as "-inf" | "zero",
  };
}

const maxPool: OpBench = {
  op: "max_pool",
  label(c) {
    const s = poolShape(c);
    return `max_pool ${s.k}x${s.k}/${s.stride} ${dims(c.inputs[0])}${
      s.padValue === "zero" ? " zero-pad" : ""
    }`;
  },
  group: () => "max_pool",
  flop(c) {
    const k = numberAttr(c.node, "kernel");
    return numel(c.output) * k * k;
  },
  bytes: (c) => 4 * (numel(c.inputs[0]) + numel(c.output)),
  weights: () => ({}),
  reference(c, data) {
    return { values: maxPoolRef(f64(data.inputs[0]), poolShape(c)), coverage: "all" };
  },
};

const globalMeanPool: OpBench = {
  op: "global_mean_pool",
  label: (c) => `global_mean_pool ${dims(c.inputs[0])}`,
  group: () => "global_mean_pool",
  flop: (c) => numel(c.inputs[0]),
  bytes: (c) => 4 * (numel(c.inputs[0]) + numel(c.output)),
  weights: () => ({}),
  reference(c, data) {
    const [n, h, w, ch] = c.inputs[0];
    return { values: globalMeanPoolRef(f64(data.inputs[0]), { n, hw: h * w, c: ch }), coverage: "all" };
  },
};

/** Rows of a token tensor: every dimension but the last. */
function rowsOf(s: Shape): number {
  return numel(s) / s[s.length - 1];
}

/** A linear node's shape as `kernels/linear.ts` reads it (x, and the residual as a second input). */
export function linearShape(c: Pick<NodeCase, "node" | "inputs">): LinearShape {
  const x = c.inputs[0];
  const activation = stringAttr(c.node, "activation", "none");
  if (activation !== "none" && activation !== "gelu") {
    throw new TypeError(
      `Cannot bench "${c.node.name}": activation must be "none" or "gelu", got "${activation}"`,
    );
  }
  return {
    rows: rowsOf(x),
    din: x[x.length - 1],
    dout: numberAttr(c.node, "outFeatures"),
    bias: c.node.weights.bias !== undefined,
    activation,
    accumulate: c.inputs.length === 2,
  };
}

const linear: OpBench = {
  op: "linear",
  label(c) {
    const s = linearShape(c);
    return `linear ${dims(c.inputs[0])} -> ${dims(c.output)}${s.bias ? " +bias" : ""}${
      s.activation === "gelu" ? " gelu" : ""
    }${s.accumulate ? " +res" : ""}`;
  },
  // Every linear of a block is its own group: --quick keeps qkv, proj, fc1 and fc2.
  group: (c) => linear.label(c),
  flop(c) {
    const s = linearShape(c);
    return 2 * s.rows * s.din * s.dout;
  },
  bytes(c) {
    const s = linearShape(c);
    const out = s.rows * s.dout;
    return 4 * (s.rows * s.din + s.din * s.dout + (s.bias ? s.dout : 0) + out + (s.accumulate ? out : 0));
  },
  weights(c, seed) {
    const s = linearShape(c);
    const bound = Math.sqrt(3 / s.din); // unit-variance outputs
    const out: Record<string, Float32Array<ArrayBuffer>> = {
      weight: randomF32(s.din * s.dout, seed + 1, -bound, bound),
    };
    if (s.bias) out.bias = randomF32(s.dout, seed + 2, -0.5, 0.5);
    return out;
  },
  reference(c, data, budgetFlop) {
    const s = linearShape(c);
    const w = f64(data.weights.weight);
    const b = data.weights.bias ? f64(data.weights.bias) : undefined;
    const x = data.inputs[0];
    const res = s.accumulate ? data.inputs[1] : undefined;
    if (linear.flop(c) <= budgetFlop) {
      return { values: linearRef(f64(x), w, b, s, res ? f64(res) : undefined), coverage: "all" };
    }
    const rows = sampleRows(s.rows); // the first two, two in the middle, the last two
    const xs = new Float64Array(rows.length * s.din);
    const rs = res ? new Float64Array(rows.length * s.dout) : undefined;
    const index = new Int32Array(rows.length * s.dout);
    rows.forEach((r, j) => {
      for (let i = 0; i < s.din; i++) xs[j * s.din + i] = x[r * s.din + i];
      for (let o = 0; o < s.dout; o++) {
        index[j * s.dout + o] = r * s.dout + o;
        if (rs) rs[j * s.dout + o] = res![r * s.dout + o];
      }
    });
    return {
      index,
      values: linearRef(xs, w, b, { ...s, rows: rows.length }, rs),
      coverage: `rows ${rows.join(",")} of ${s.rows}`,
    };
  },
};

const layerNorm: OpBench = {
  op: "layer_norm",
  label: (c) => `layer_norm ${dims(c.inputs[0])}`,
  // The token norms and the final norm over the gathered class tokens are two groups.
  group: (c) => `layer_norm ${dims(c.inputs[0])}`,
  flop: (c) => 8 * numel(c.inputs[0]),
  bytes(c) {
    const x = c.inputs[0];
    return 4 * (2 * numel(x) + 2 * x[x.length - 1]);
  },
  weights(c, seed) {
    const d = c.inputs[0][c.inputs[0].length - 1];
    return { gamma: randomF32(d, seed + 2, 0.75, 1.25), beta: randomF32(d, seed + 3, -0.25, 0.25) };
  },
  reference(c, data) {
    const x = c.inputs[0];
    const shape = { rows: rowsOf(x), d: x[x.length - 1], eps: numberAttr(c.node, "eps") };
    const values = layerNormRef(f64(data.inputs[0]), f64(data.weights.gamma), f64(data.weights.beta), shape);
    return { values, coverage: "all" };
  },
};

/** An attention node's shape as `kernels/attention.ts` reads it (qkv [N, T, 3D]). */
export function attentionShape(c: Pick<NodeCase, "node" | "inputs">): AttentionShape {
  const [n, tokens, d3] = c.inputs[0];
  const heads = numberAttr(c.node, "heads");
  return { n, tokens, heads, headDim: d3 / 3 / heads };
}

const attention: OpBench = {
  op: "attention",
  label(c) {
    const s = attentionShape(c);
    return `attention ${dims(c.inputs[0])} -> ${dims(c.output)} ${s.heads}x${s.headDim}`;
  },
  group: () => "attention",
  flop(c) {
    const s = attentionShape(c);
    return 4 * s.n * s.tokens * s.tokens * s.heads * s.headDim;
  },
  bytes: (c) => 4 * (numel(c.inputs[0]) + numel(c.output)),
  weights: () => ({}),
  reference(c, data) {
    return { values: attentionRef(f64(data.inputs[0]), attentionShape(c)), coverage: "all" };
  },
};

const vitTokens: OpBench = {
  op: "vit_tokens",
  label: (c) => `vit_tokens ${dims(c.inputs[0])} -> ${dims(c.output)}`,
  group: () => "vit_tokens",
  flop: (c) => numel(c.output),
  bytes(c) {
    const [, t, d] = c.output;
    return 4 * (numel(c.inputs[0]) + d + t * d + numel(c.output));
  },
  weights(c, seed) {
    const [, t, d] = c.output;
    return { cls: randomF32(d, seed + 2), pos: randomF32(t * d, seed + 3) };
  },
  reference(c, data) {
    const [n, gh, gw, d] = c.inputs[0];
    const values = vitTokensRef(f64(data.inputs[0]), f64(data.weights.cls), f64(data.weights.pos), {
      n,
      patches: gh * gw,
      d,
    });
    return { values, coverage: "all" };
  },
};

/** A token_gather node's shape as `kernels/token_gather.ts` reads it. */
export function tokenGatherShape(c: Pick<NodeCase, "node" | "inputs">): TokenGatherShape {
  const [n, tokens, d] = c.inputs[0];
  return {
    n,
    tokens,
    d,
    token: numberAttr(c.node, "token", 0),
    slots: numberAttr(c.node, "slots"),
    slot: numberAttr(c.node, "slot"),
  };
}

const tokenGather: OpBench = {
  op: "token_gather",
  label(c) {
    const s = tokenGatherShape(c);
    const token = s.token === 0 ? "class token" : `token ${s.token}`;
    // The node creating the collector and the ones writing into it are two kinds (in place or not).
    return `token_gather ${token} ${dims(c.inputs[0])} -> ${dims(c.output)}${
      c.node.inPlace ? " in place" : ""
    }`;
  },
  group: (c) => `token_gather${c.node.inPlace ? " in place" : ""}`,
  flop: () => 0,
  bytes: (c) => 4 * 2 * c.inputs[0][0] * c.inputs[0][2],
  weights: () => ({}),
  reference(c, data) {
    const s = tokenGatherShape(c);
    const size = s.n * s.slots * s.d;
    if (c.node.inPlace) {
      const values = tokenGatherRef(f64(data.inputs[0]), f64(data.prior!), s);
      return { values, coverage: "all" };
    }
    // The node that creates the collector defines only its own slot.
    const all = tokenGatherRef(f64(data.inputs[0]), new Float64Array(size), s);
    const index = new Int32Array(s.n * s.d);
    const values = new Float64Array(s.n * s.d);
    for (let b = 0; b < s.n; b++) {
      for (let i = 0; i < s.d; i++) {
        const at = (b * s.slots + s.slot) * s.d + i;
        index[b * s.d + i] = at;
        values[b * s.d + i] = all[at];
      }
    }
    return { index, values, coverage: `slot ${s.slot} of ${s.slots}` };
  },
};

/** The entries, by op. */
export const OP_BENCH: ReadonlyMap<string, OpBench> = new Map(
  [
    ...[conv2d, groupNorm, maxPool, globalMeanPool],
    ...[linear, layerNorm, attention, vitTokens, tokenGather],
  ].map((e) => [e.op, e]),
);

/** A 32-bit hash of a label: the seed of its data, so a shape gets the same values in every run. */
export function labelSeed(label: string): number {
  return [...label].reduce((h, ch) => Math.imul(h ^ ch.charCodeAt(0), 16777619), 2166136261) >>> 0;
}

/**
 * Seeded data of a case: inputs (and an in-place node's prior output) uniform in [-1, 1), weights from the
 * op's entry.
 */
export function caseData(entry: OpBench, c: NodeCase, seed: number): CaseData {
  return {
    inputs: c.inputs.map((s, i) => randomF32(numel(s), seed + 100 * i)),
    prior: c.node.inPlace ? randomF32(numel(c.output), seed + 7) : undefined,
    weights: entry.weights(c, seed),
  };
}
