/**
 * Temporary folders for tests: made fresh, removed afterwards whatever the test did.
 * @module
 */

/** Runs `fn` with a new temporary folder, removing it (recursively) afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>, prefix = "derm-test-"): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
