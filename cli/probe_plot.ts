/**
 * The data-efficiency curve of `deno task probe --shots ... --plot curve.svg` as one SVG document, written
 * by hand: one line per series (a label column, or a model), the metric (0 to 1) against the training
 * rows per class, evenly spaced categories ("1", "2", "5", ..., "all"), a ±1 standard deviation bar at
 * each point, a legend, and each point's value in a tooltip.
 * @module
 */

/** One line of the chart. */
export interface CurveSeries {
  /** Legend text. */
  readonly name: string;
  /** One point per category (null: no value, the line breaks). */
  readonly points: readonly { readonly x: string; readonly y: number | null; readonly sd?: number | null }[];
}

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/** Escapes text for SVG character data and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * Renders the curve.
 *
 * @param title Heading.
 * @param metric Y-axis label (the metric's name).
 * @param series The lines; the categories are those of all series, in first-seen order.
 * @returns The SVG document.
 * @example
 * ```ts
 * const svg = curveSvg("benign_malignant", "macro_f1", [
 *   { name: "logreg", points: [{ x: "1", y: 0.52, sd: 0.04 }, { x: "all", y: 0.61 }] },
 * ]);
 * ```
 */
export function curveSvg(title: string, metric: string, series: readonly CurveSeries[]): string {
  const categories: string[] = [];
  for (const s of series) for (const p of s.points) if (!categories.includes(p.x)) categories.push(p.x);
  const width = 720;
  const left = 60;
  const right = 20;
  const top = 40;
  const plotH = 300;
  const legendH = 16 * series.length;
  const bottom = 46 + legendH;
  const height = top + plotH + bottom;
  const plotW = width - left - right;
  const xOf = (i: number) =>
    left + (categories.length === 1 ? plotW / 2 : (i / (categories.length - 1)) * plotW);
  const yOf = (v: number) => top + (1 - Math.min(1, Math.max(0, v))) * plotH;
  const parts: string[] = [
    `<text x="${width / 2}" y="22" text-anchor="middle" font-weight="bold" font-size="14">${
      escapeXml(title)
    }</text>`,
  ];
  for (let t = 0; t <= 10; t++) {
    const y = yOf(t / 10);
    parts.push(
      `<line x1="${left}" y1="${y}" x2="${width - right}" y2="${y}" stroke="${
        t % 5 === 0 ? "#bbb" : "#eee"
      }"/>`,
      `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${(t / 10).toFixed(1)}</text>`,
    );
  }
  categories.forEach((c, i) =>
    parts.push(`<text x="${xOf(i)}" y="${top + plotH + 16}" text-anchor="middle">${escapeXml(c)}</text>`)
  );
  parts.push(
    `<text x="${left + plotW / 2}" y="${
      top + plotH + 34
    }" text-anchor="middle">training rows per class</text>`,
    `<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${
      escapeXml(metric)
    }</text>`,
  );
  series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length];
    const at = new Map(s.points.map((p) => [p.x, p]));
    // Consecutive defined points make one polyline; a null breaks it.
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) {
        parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${run.join(" ")}"/>`);
      }
      run = [];
    };
    categories.forEach((c, i) => {
      const p = at.get(c);
      if (!p || p.y === null) return flush();
      run.push(`${xOf(i).toFixed(1)},${yOf(p.y).toFixed(1)}`);
    });
    flush();
    categories.forEach((c, i) => {
      const p = at.get(c);
      if (!p || p.y === null) return;
      const x = xOf(i).toFixed(1);
      if (p.sd) {
        parts.push(
          `<line x1="${x}" y1="${yOf(p.y - p.sd).toFixed(1)}" x2="${x}" y2="${
            yOf(p.y + p.sd).toFixed(1)
          }" stroke="${color}"/>`,
        );
      }
      const tip = `${s.name}, ${c}: ${p.y.toFixed(4)}${p.sd ? ` ± ${p.sd.toFixed(4)}` : ""}`;
      parts.push(
        `<circle cx="${x}" cy="${yOf(p.y).toFixed(1)}" r="3.5" fill="${color}"><title>${
          escapeXml(tip)
        }</title></circle>`,
      );
    });
    const ly = top + plotH + 50 + 16 * si;
    parts.push(
      `<rect x="${left}" y="${ly - 9}" width="12" height="12" fill="${color}"/>`,
      `<text x="${left + 18}" y="${ly + 1}">${escapeXml(s.name)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
${parts.join("\n")}
</svg>
`;
}
