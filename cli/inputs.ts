/**
 * The images of `deno task embed`: files, directories (recursive), glob patterns and `--list` files (one
 * path per line, or a CSV with a `path` column whose other columns become metadata), in a stable order,
 * each path once.
 * @module
 */
import { dirname, extname, isAbsolute, join, normalize, resolve } from "node:path";

/** Extensions a directory walk or a glob picks up (case-insensitive). */
export const IMAGE_EXTENSIONS: readonly string[] = [".png", ".jpg", ".jpeg"];

/** One image to embed: its path as the user gave it (or as found) and metadata from a `--list` CSV. */
export interface InputImage {
  /** Path, relative to the working directory or absolute. */
  readonly path: string;
  /** Extra CSV columns (empty for other sources). */
  readonly metadata: Readonly<Record<string, string>>;
}

/** Options of {@linkcode collectInputs}. */
export interface CollectInputsOptions {
  /** `--list` files. */
  lists?: readonly string[];
}

/**
 * Expands the command line's image arguments and `--list` files into the images to embed, in order:
 * arguments first (each directory's files sorted by path), then the lists; a path seen before (after
 * normalisation) is skipped, keeping its first occurrence and metadata.
 *
 * @param args Files, directories or glob patterns (`*`, `?`, `**`, `[...]`). A name that is neither an
 * existing file, a directory nor a pattern is kept, so that reading it reports the error for that image.
 * @param options `--list` files.
 * @returns The images.
 * @throws {TypeError} When a `--list` file cannot be read, a CSV has no path column, or a glob matches
 * nothing.
 */
export async function collectInputs(
  args: readonly string[],
  options: CollectInputsOptions = {},
): Promise<InputImage[]> {
  const out: InputImage[] = [];
  const seen = new Set<string>();
  const add = (path: string, metadata: Record<string, string> = {}) => {
    const key = resolve(path);
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ path, metadata });
  };
  for (const arg of args) {
    const info = await statOrUndefined(arg);
    if (info?.isDirectory) {
      for (const p of await walkImages(arg)) add(p);
    } else if (!info && /[*?[]/.test(arg)) {
      const found = await expandGlob(arg);
      if (found.length === 0) throw new TypeError(`Cannot expand "${arg}": no image matches the pattern`);
      for (const p of found) add(p);
    } else {
      add(arg);
    }
  }
  for (const list of options.lists ?? []) {
    for (const entry of await readList(list)) add(entry.path, entry.metadata);
  }
  return out;
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch {
    return undefined;
  }
}

function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

/** Image files under `dir`, recursively, sorted by path (code-unit order); symlinked folders not followed. */
export async function walkImages(dir: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) await visit(p);
      else if ((e.isFile || e.isSymlink) && isImageName(e.name)) found.push(p);
    }
  };
  await visit(dir);
  return found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Compiles a glob to a regular expression over `/`-separated paths: `**` any number of folders, `*` and
 * `?` within one name, `[...]` a character class.
 */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      const slash = glob[i + 2] === "/";
      re += slash ? "(?:.*/)?" : ".*";
      i += slash ? 2 : 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        const body = glob.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\");
        re += `[${body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** Image files matching `pattern`, sorted: walks from the pattern's longest folder prefix without wildcards. */
async function expandGlob(pattern: string): Promise<string[]> {
  const parts = pattern.split("/");
  const firstWild = parts.findIndex((p) => /[*?[]/.test(p));
  const base = parts.slice(0, firstWild).join("/") || (pattern.startsWith("/") ? "/" : ".");
  const info = await statOrUndefined(base);
  if (!info?.isDirectory) return [];
  const matcher = globToRegExp(normalize(pattern).replace(/^\.\//, ""));
  const candidates = await walkImages(base);
  return candidates.filter((p) => matcher.test(normalize(p)));
}

/**
 * Reads a `--list` file: a CSV (a `.csv` name or a first line with a `path` column) gives paths from its
 * `path` column (else `file`, `filename` or `image`) and the other columns as metadata; any other file
 * one path per line (blank lines and `#` comments skipped). Relative paths are relative to the list's
 * folder.
 */
export async function readList(list: string): Promise<InputImage[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(list);
  } catch (e) {
    throw new TypeError(`Cannot read --list "${list}": ${(e as Error).message}`);
  }
  const base = dirname(list);
  const place = (p: string) => (isAbsolute(p) ? p : join(base, p));
  const firstLine = text.split(/\r?\n/, 1)[0] ?? "";
  const rows = parseCsv(text);
  const header = rows[0]?.map((h) => h.trim()) ?? [];
  const pathColumns = ["path", "file", "filename", "image"];
  const isCsv = list.toLowerCase().endsWith(".csv") || header.includes("path") && firstLine.includes(",");
  if (!isCsv) {
    return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
      .map((p) => ({ path: place(p), metadata: {} }));
  }
  const pathColumn = pathColumns.map((c) => header.indexOf(c)).find((i) => i >= 0);
  if (pathColumn === undefined) {
    throw new TypeError(
      `Cannot read --list "${list}": expected a column named ${pathColumns.join(", ")}, got ${
        header.join(", ")
      }`,
    );
  }
  const out: InputImage[] = [];
  for (const row of rows.slice(1)) {
    if (row.length === 1 && row[0].trim() === "") continue;
    const p = row[pathColumn]?.trim() ?? "";
    if (p === "") continue;
    const metadata: Record<string, string> = {};
    header.forEach((h, i) => {
      if (i !== pathColumn) metadata[h] = row[i] ?? "";
    });
    out.push({ path: place(p), metadata });
  }
  return out;
}

/** RFC 4180 CSV: quoted fields with `""` escapes and embedded newlines; CRLF or LF line ends. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
