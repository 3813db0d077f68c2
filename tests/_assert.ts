/**
 * Assertions the tests share beyond `node:assert/strict`.
 * @module
 */
import assert from "node:assert/strict";

/**
 * Awaits `promise`, which must reject with an instance of `type`; checks the fields given and returns
 * the error for further checks.
 *
 * @example
 * ```ts
 * const e = await rejectsWith(openFile("x"), WeightsError, { file: "x", message: /truncated/ });
 * ```
 */
export async function rejectsWith<E extends Error>(
  promise: Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => E,
  expect: { message?: RegExp } & Partial<Record<string, unknown>> = {},
): Promise<E> {
  let caught: unknown;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof type, `expected a ${type.name}, got ${caught}`);
  for (const [key, value] of Object.entries(expect)) {
    if (key === "message") assert.match(caught.message, value as RegExp);
    else assert.equal((caught as unknown as Record<string, unknown>)[key], value, `${type.name}.${key}`);
  }
  return caught;
}
