import assert from "node:assert/strict";
import { curveSvg, escapeXml } from "./probe_plot.ts";

Deno.test("curveSvg() draws one line and one marker per point for each series, with sd bars and a legend", () => {
  const svg = curveSvg("dx <probe>", "macro_f1", [
    {
      name: "benign_malignant",
      points: [{ x: "1", y: 0.5, sd: 0.1 }, { x: "5", y: 0.6, sd: 0.05 }, { x: "all", y: 0.7, sd: 0 }],
    },
    { name: "age & sex", points: [{ x: "1", y: 0.3 }, { x: "5", y: null }, { x: "all", y: 0.4 }] },
  ]);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.match(svg, /dx &lt;probe&gt;/);
  assert.match(svg, /age &amp; sex/);
  // Series 1: one polyline through 3 points; series 2: broken by the null, so no line of 2+ points.
  const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) => m[1].split(" ").length);
  assert.deepEqual(lines, [3]);
  assert.equal((svg.match(/<circle /g) ?? []).length, 5);
  // sd bars where sd > 0: two
  assert.equal(
    (svg.match(/<line x1="[\d.]+" y1="[\d.]+" x2="[\d.]+" y2="[\d.]+" stroke="#1f77b4"\/>/g) ?? []).length,
    2,
  );
  for (const c of ["1", "5", "all"]) assert.match(svg, new RegExp(`text-anchor="middle">${c}</text>`));
  assert.match(svg, /<title>benign_malignant, 5: 0.6000 ± 0.0500<\/title>/);
});

Deno.test("curveSvg() places 0 at the bottom and 1 at the top of the plot", () => {
  const svg = curveSvg("t", "accuracy", [{ name: "a", points: [{ x: "1", y: 0 }, { x: "2", y: 1 }] }]);
  const [, a, b] = /points="[\d.]+,([\d.]+) [\d.]+,([\d.]+)"/.exec(svg)!;
  assert.equal(Number(a) - Number(b), 300);
});

Deno.test("escapeXml() escapes markup characters", () => {
  assert.equal(escapeXml(`a<b>&"c"`), "a&lt;b&gt;&amp;&quot;c&quot;");
});
