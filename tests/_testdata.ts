/**
 * The project's test data, in `testdata/` at the repository root (see testdata/README.md): references,
 * images, checkpoints and SavedModel files copied from the team's shared fixtures, so that a clone of the
 * repository tests itself. A missing file is a failure naming it, never a skip.
 * @module
 */

/** The `testdata/` folder of this checkout. */
export const TESTDATA = new URL("../testdata/", import.meta.url);

/**
 * The absolute path of `testdata/<relative>`.
 *
 * @throws {Error} Naming the file when it is not there: a test that needs it fails, it never skips.
 */
export function testdataPath(relative: string): string {
  const url = new URL(relative, TESTDATA);
  try {
    Deno.statSync(url);
  } catch (cause) {
    throw new Error(
      `Cannot find test data "testdata/${relative}" (${url.pathname}): the checkout is incomplete; ` +
        `testdata/README.md lists every file and where it came from`,
      { cause },
    );
  }
  return url.pathname;
}

/** The bytes of `testdata/<relative>` (a missing file throws, naming it). */
export function readTestdata(relative: string): Uint8Array<ArrayBuffer> {
  return Deno.readFileSync(testdataPath(relative));
}

/** The text of `testdata/<relative>` (a missing file throws, naming it). */
export function readTestdataText(relative: string): string {
  return Deno.readTextFileSync(testdataPath(relative));
}

/** The parsed JSON of `testdata/<relative>` (a missing file throws, naming it). */
export function readTestdataJson<T = unknown>(relative: string): T {
  return JSON.parse(readTestdataText(relative)) as T;
}
