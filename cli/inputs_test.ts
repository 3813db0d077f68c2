import assert from "node:assert/strict";
import { collectInputs, globToRegExp, parseCsv } from "./inputs.ts";
import { withTempDir } from "../tests/_temp.ts";

Deno.test("collectInputs() expands folders, globs and lists in a stable order, each path once", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/b/c`, { recursive: true });
    for (const f of ["a.png", "b/z.JPG", "b/c/y.jpeg", "b/c/notes.txt", "b/a.png"]) {
      await Deno.writeFile(`${dir}/${f}`, new Uint8Array([1]));
    }
    await Deno.writeTextFile(`${dir}/list.txt`, "# comment\nb/a.png\n\nmissing.png\n");
    await Deno.writeTextFile(
      `${dir}/labels.csv`,
      'path,diagnosis,note\nb/c/y.jpeg,nevus,"says ""hi"", twice"\nother.png,melanoma,\n',
    );
    const got = await collectInputs([`${dir}/b`, `${dir}/a.png`, `${dir}/b/a.png`, `${dir}/**/*.png`], {
      lists: [`${dir}/list.txt`, `${dir}/labels.csv`],
    });
    assert.deepEqual(got.map((g) => g.path.slice(dir.length + 1)), [
      "b/a.png",
      "b/c/y.jpeg",
      "b/z.JPG",
      "a.png",
      "missing.png",
      "other.png",
    ]);
    assert.deepEqual(got[5].metadata, { diagnosis: "melanoma", note: "" });
    // b/c/y.jpeg came first from the folder, without metadata: the first occurrence wins.
    assert.deepEqual(got[1].metadata, {});
    const csv = await collectInputs([], { lists: [`${dir}/labels.csv`] });
    assert.deepEqual(csv[0].metadata, { diagnosis: "nevus", note: 'says "hi", twice' });
    await assert.rejects(collectInputs([`${dir}/*.gif`]), /no image matches/);
  });
});

Deno.test("globToRegExp() and parseCsv() handle the usual forms", () => {
  assert.ok(globToRegExp("a/**/*.png").test("a/x/y/z.png"));
  assert.ok(globToRegExp("a/**/*.png").test("a/z.png"));
  assert.ok(!globToRegExp("a/*.png").test("a/x/z.png"));
  assert.ok(globToRegExp("a/img_?[0-9].jpg").test("a/img_x7.jpg"));
  assert.deepEqual(parseCsv('a,b\r\n"1\n2",3\r\n'), [["a", "b"], ["1\n2", "3"]]);
});
