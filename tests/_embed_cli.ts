/**
 * Running `deno task embed` as a subprocess, as a user does (the repository's own deno.json, so the
 * lean dependency set), for the end-to-end command-line tests.
 * @module
 */

/** The command's entry point. */
export const EMBED = new URL("../cli/embed.ts", import.meta.url).pathname;
/** The repository root, the commands' working directory. */
export const ROOT = new URL("../", import.meta.url).pathname;
/** The three CC0 JPEGs of `samples/`. */
export const SAMPLES: readonly string[] = ["ISIC_0000101.jpg", "ISIC_0000102.jpg", "ISIC_0000140.jpg"].map((
  f,
) => new URL(`../samples/${f}`, import.meta.url).pathname);

/** The `deno run ... cli/embed.ts ARGS` command, stdout piped or discarded. */
export function embedCommand(args: string[], stdout: "piped" | "null" = "piped"): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-net", EMBED, ...args],
    cwd: ROOT,
    stdout,
    stderr: "piped",
  });
}

/** Runs the command to its end: exit code and decoded output. */
export async function embedCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await embedCommand(args).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}
