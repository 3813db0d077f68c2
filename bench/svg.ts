/**
 * Two bar charts as one SVG document, written by hand: GPU ms per layer of the model, and GFLOP/s per
 * convolution shape for each engine.
 * @module
 */

/** One bar group: a label and one value per series (undefined: no bar). */
export interface BarGroup {
  readonly label: string;
  readonly values: readonly (number | undefined)[];
}

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function chart(
  title: string,
  unit: string,
  series: readonly string[],
  groups: readonly BarGroup[],
  y0: number,
) {
  const rowH = series.length > 1 ? 6 * series.length + 4 : 8;
  const left = 300;
  const width = 560;
  const max = Math.max(1e-9, ...groups.flatMap((g) => g.values.filter((v): v is number => v !== undefined)));
  const parts: string[] = [`<text x="10" y="${y0 + 16}" font-weight="bold">${escape(title)}</text>`];
  series.forEach((s, i) =>
    parts.push(
      `<rect x="${left + i * 140}" y="${y0 + 6}" width="10" height="10" fill="${
        COLORS[i % COLORS.length]
      }"/>`,
      `<text x="${left + 14 + i * 140}" y="${y0 + 15}">${escape(s)}</text>`,
    )
  );
  let y = y0 + 28;
  for (const g of groups) {
    parts.push(`<text x="${left - 6}" y="${y + rowH / 2 + 3}" text-anchor="end">${escape(g.label)}</text>`);
    g.values.forEach((v, i) => {
      if (v === undefined) return;
      const h = series.length > 1 ? 6 : 7;
      const w = Math.max(0.5, (v / max) * width);
      parts.push(
        `<rect x="${left}" y="${y + i * 6}" width="${w.toFixed(1)}" height="${h}" fill="${
          COLORS[i % COLORS.length]
        }"><title>${escape(`${g.label}: ${v.toPrecision(4)} ${unit}`)}</title></rect>`,
      );
    });
    y += rowH;
  }
  parts.push(
    `<text x="${left + width}" y="${y + 12}" text-anchor="end">max ${max.toPrecision(4)} ${
      escape(unit)
    }</text>`,
  );
  return { svg: parts.join("\n"), height: y + 20 - y0 };
}

/**
 * Renders the per-layer chart and the per-shape GFLOP/s chart.
 *
 * @param title Heading (adapter and date).
 * @param layers GPU ms per layer.
 * @param engines Series names (e.g. ours, ORT, TF.js).
 * @param shapes GFLOP/s per shape, one value per engine.
 * @returns The SVG document.
 */
export function benchSvg(
  title: string,
  layers: readonly { label: string; ms: number }[],
  engines: readonly string[],
  shapes: readonly BarGroup[],
): string {
  const head = `<text x="10" y="18" font-weight="bold" font-size="14">${escape(title)}</text>`;
  const a = chart(
    "Model: GPU ms per layer",
    "ms",
    ["ours"],
    layers.map((l) => ({ label: l.label, values: [l.ms] })),
    24,
  );
  const b = chart("Convolutions: GFLOP/s per shape", "GFLOP/s", engines, shapes, 24 + a.height + 10);
  const height = 24 + a.height + 10 + b.height + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="900" height="${height}" font-family="sans-serif" font-size="9">
<rect width="100%" height="100%" fill="white"/>
${head}
${a.svg}
${b.svg}
</svg>
`;
}
