/**
 * A pickle reader (protocols 0 to 5) that builds data and never executes anything: no import, no call, no
 * attribute lookup. A global is two strings ({@linkcode PickleGlobal}); calling it (REDUCE, NEWOBJ...) makes
 * data for Python's data types, asks the caller's `construct` hook (PyTorch's tensor rebuilds), or makes an
 * inert {@linkcode PickleObject} recording the class and arguments; a global that could only be there to
 * reach the system is refused (`pickle_globals.ts` states the rule). `pickle_values.ts` gives the
 * Python -> JavaScript mapping.
 *
 * Opcodes: all of protocols 0-5 (as CPython's `pickle.py` defines them) except the extension registry
 * (EXT1/2/4: nothing is registered) and out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER), which are
 * refused. Limits ({@linkcode PickleLimits}) bound the memo index, container nesting (MARK depth while
 * reading, then the depth of the finished value, which must also be free of reference cycles) and the
 * number of values; string and bytes lengths are checked against the input left before anything is
 * allocated. Every problem is a {@linkcode WeightsError} naming the file, the pickle and the byte offset.
 *
 * Longer than ~400 lines because the opcode table is one switch that reads best whole.
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { canonicalModule, pythonData, refusalReason } from "./pickle_globals.ts";
import {
  describePickleValue,
  isNamespaceObject,
  PickleGlobal,
  PickleObject,
  setPickleAttributes,
} from "./pickle_values.ts";

export {
  describePickleValue,
  isNamespaceObject,
  pickleAttributes,
  PickleGlobal,
  PickleObject,
} from "./pickle_values.ts";

/** Bounds on what a pickle may build. */
export interface PickleLimits {
  /** Deepest nesting of containers (lists, tuples, dicts, sets, objects) in the result and of MARKs. */
  readonly maxDepth: number;
  /** Memo indices must be below this (PUT, BINPUT, LONG_BINPUT, MEMOIZE). */
  readonly maxMemoIndex: number;
  /** Most values pushed in one pickle. */
  readonly maxObjects: number;
  /** Longest text line (protocol 0 arguments, GLOBAL names). */
  readonly maxLineBytes: number;
}

/**
 * Defaults: real checkpoints nest under 10 levels and push and memoise a few tens of values per tensor, so
 * these leave a 10-fold margin over a 100,000-tensor checkpoint; a text argument is a name or a number.
 */
export const DEFAULT_PICKLE_LIMITS: PickleLimits = {
  maxDepth: 1000,
  maxMemoIndex: 1 << 25,
  maxObjects: 1 << 25,
  maxLineBytes: 1 << 20,
};

/** Options of {@linkcode unpickle}. */
export interface UnpickleOptions {
  /** File name for messages (default "<bytes>"). */
  file?: string;
  /** Which pickle of the file, for messages (e.g. "archive/data.pkl"). */
  part?: string;
  /** Offset of the pickle's first opcode in `bytes` (default 0). */
  start?: number;
  /** Resolves a persistent id (PERSID, BINPERSID); without it, persistent ids are an error. */
  persistentLoad?(pid: unknown): unknown;
  /**
   * Builds the value of a call of `callable` (not refused, not a Python data type): returns it, or
   * `undefined` to get an inert {@linkcode PickleObject}. May throw (a TypeError is wrapped with the position).
   */
  construct?(
    callable: PickleGlobal,
    args: readonly unknown[],
    kwargs?: ReadonlyMap<unknown, unknown>,
  ): unknown;
  /** Overrides of {@linkcode DEFAULT_PICKLE_LIMITS}. */
  limits?: Partial<PickleLimits>;
}

/** What {@linkcode unpickle} read. */
export interface UnpickleResult {
  /** The value (what `pickle.load` would return, as data). */
  readonly value: unknown;
  /** Offset just past the STOP opcode. */
  readonly end: number;
  /** Highest protocol named by a PROTO opcode (0 when none). */
  readonly protocol: number;
}

const truncations = new WeakSet<Error>();

/** Whether `error` (from {@linkcode unpickle}) says the input ended before STOP: more bytes may complete it. */
export function isTruncatedPickle(error: unknown): boolean {
  return error instanceof Error && truncations.has(error);
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });
const LATIN1 = new TextDecoder("latin1");

/** A Python 2 `str`: UTF-8 where it is valid (torch.load's default encoding), otherwise Latin-1 bytes. */
function decodePy2String(bytes: Uint8Array): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    return LATIN1.decode(bytes);
  }
}

function intValue(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value;
}

/** Little-endian two's complement bytes (LONG1, LONG4). */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
  if (bytes[bytes.length - 1] & 0x80) value -= 1n << BigInt(8 * bytes.length);
  return intValue(value);
}

/** Python's `codecs.escape_decode` of a STRING argument (between its quotes). */
function escapeDecode(text: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== 0x5c || i + 1 >= text.length) {
      out.push(c);
      continue;
    }
    const e = String.fromCharCode(text[++i]);
    const simple: Record<string, number> = {
      n: 10,
      t: 9,
      r: 13,
      a: 7,
      b: 8,
      f: 12,
      v: 11,
      "\\": 92,
      "'": 39,
      '"': 34,
    };
    if (Object.hasOwn(simple, e)) out.push(simple[e]);
    else if (e === "\n") continue;
    else if (e === "x" && i + 2 < text.length) {
      const hex = String.fromCharCode(text[i + 1], text[i + 2]);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new SyntaxError(`invalid \\x escape "\\x${hex}"`);
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (e >= "0" && e <= "7") {
      let digits = e;
      while (digits.length < 3 && i + 1 < text.length && text[i + 1] >= 0x30 && text[i + 1] <= 0x37) {
        digits += String.fromCharCode(text[++i]);
      }
      out.push(parseInt(digits, 8) & 0xff);
    } else out.push(0x5c, e.charCodeAt(0));
  }
  return Uint8Array.from(out);
}

/** Python's `raw-unicode-escape` (UNICODE): Latin-1 bytes with \uXXXX and \UXXXXXXXX escapes. */
function rawUnicodeEscape(bytes: Uint8Array): string {
  const text = LATIN1.decode(bytes);
  return text.replace(
    /\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g,
    (_, u4, u8) => String.fromCodePoint(parseInt(u4 ?? u8, 16)),
  );
}

/** A Python int literal (INT, LONG, GET, PUT): decimal, or 0x/0o/0b prefixed. */
function parseInt0(text: string): bigint {
  const t = text.trim().replace(/_/g, "");
  if (!/^[+-]?(\d+|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+)$/.test(t)) {
    throw new SyntaxError(`invalid int literal ${JSON.stringify(text)}`);
  }
  const negative = t.startsWith("-");
  const digits = t.replace(/^[+-]/, "");
  const value = BigInt(/^0\d/.test(digits) ? digits.replace(/^0+(?=\d)/, "") : digits);
  return negative ? -value : value;
}

function parseFloatText(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === "inf" || t === "+inf" || t === "infinity") return Infinity;
  if (t === "-inf" || t === "-infinity") return -Infinity;
  if (t === "nan" || t === "+nan" || t === "-nan") return NaN;
  const value = Number(t);
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(t) || Number.isNaN(value)) {
    throw new SyntaxError(`invalid float literal ${JSON.stringify(text)}`);
  }
  return value;
}

/** The children of a container value, or `undefined` for a leaf. */
function childrenOf(value: unknown): unknown[] | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  if (Array.isArray(value)) return value;
  if (value instanceof Map) return [...value.keys(), ...value.values()];
  if (value instanceof Set) return [...value];
  if (value instanceof PickleObject) {
    return [
      ...value.args,
      ...(value.kwargs?.values() ?? []),
      value.state,
      ...value.items.keys(),
      ...value.items.values(),
      ...value.list,
    ];
  }
  const proto = Object.getPrototypeOf(value);
  if (proto === null || proto === Object.prototype) return Object.values(value);
  return undefined; // Uint8Array, PickleGlobal, values from hooks (tensor references)
}

/**
 * Checks that `root` nests at most `maxDepth` containers deep and has no reference cycle, without
 * recursion (shared values are walked once).
 *
 * @returns A message describing the problem, or `undefined`.
 */
function nestingProblem(root: unknown, maxDepth: number): string | undefined {
  const height = new Map<object, number>();
  const onPath = new Set<object>();
  const stack: { node: object; children: unknown[]; next: number; height: number }[] = [];
  const enter = (value: unknown): string | undefined => {
    const children = childrenOf(value);
    if (!children) return undefined;
    const node = value as object;
    if (onPath.has(node)) return "it contains a reference cycle (a container inside itself)";
    const known = height.get(node);
    if (known !== undefined) {
      if (stack.length + known > maxDepth) return `containers nest deeper than the limit of ${maxDepth}`;
      if (stack.length) stack[stack.length - 1].height = Math.max(stack[stack.length - 1].height, known + 1);
      return undefined;
    }
    if (stack.length + 1 > maxDepth) return `containers nest deeper than the limit of ${maxDepth}`;
    onPath.add(node);
    stack.push({ node, children, next: 0, height: 1 });
    return undefined;
  };
  const first = enter(root);
  if (first) return first;
  while (stack.length) {
    const top = stack[stack.length - 1];
    if (top.next < top.children.length) {
      const problem = enter(top.children[top.next++]);
      if (problem) return problem;
      continue;
    }
    stack.pop();
    onPath.delete(top.node);
    height.set(top.node, top.height);
    if (stack.length) {
      stack[stack.length - 1].height = Math.max(stack[stack.length - 1].height, top.height + 1);
    }
  }
  return undefined;
}

/**
 * Reads one pickle, building data only (see the module doc).
 *
 * @param bytes The input; the pickle starts at `options.start`.
 * @param options Names for messages, the persistent id and construct hooks, limits.
 * @returns The value, the offset after STOP, and the protocol.
 * @throws {WeightsError} naming the file, the pickle and the byte for an unknown or unsupported opcode, a
 * refused global, a stack or memo misuse, a limit passed, a length past the end of the input, or input
 * that ends before STOP ({@linkcode isTruncatedPickle} tells that case apart).
 *
 * @example
 * ```ts
 * const { value } = unpickle(bytes, { file: "model.pth", part: "archive/data.pkl" });
 * ```
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions = {}): UnpickleResult {
  const file = options.file ?? "<bytes>";
  const limits = { ...DEFAULT_PICKLE_LIMITS, ...options.limits };
  const where = options.part ? `pickle "${options.part}"` : "pickle";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = options.start ?? 0;
  let op = pos;
  let protocol = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  let pushes = 0;

  const fail = (message: string, cause?: unknown): WeightsError =>
    new WeightsError(
      file,
      "",
      `Cannot read "${file}": ${where} at byte ${op}: ${message}`,
      cause ? { cause } : undefined,
    );
  const truncated = (need: number | string): WeightsError => {
    const what = typeof need === "number" ? `${need} more bytes, got ${bytes.length - pos}` : need;
    const e = fail(`truncated: expected ${what} (no STOP opcode before the end)`);
    truncations.add(e);
    return e;
  };
  const take = (n: number): Uint8Array => {
    if (n > bytes.length - pos) throw truncated(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const u8 = () => take(1)[0];
  const u16 = () => (take(2), view.getUint16(pos - 2, true));
  const u32 = () => (take(4), view.getUint32(pos - 4, true));
  const i32 = () => (take(4), view.getInt32(pos - 4, true));
  const u64 = () => {
    take(8);
    const v = view.getBigUint64(pos - 8, true);
    return Number(v); // beyond 2^53 inexact, but then past the end of any input anyway
  };
  /** A length-prefixed argument: the length is checked against the input left before anything else. */
  const sized = (length: number, what: string): Uint8Array => {
    if (length > bytes.length - pos) {
      const e = fail(
        `truncated: ${what} of ${length} bytes is past the end of the input (${
          bytes.length - pos
        } bytes left)`,
      );
      truncations.add(e);
      throw e;
    }
    return take(length);
  };
  const line = (): Uint8Array => {
    const limit = Math.min(bytes.length, pos + limits.maxLineBytes + 1);
    const nl = bytes.subarray(pos, limit).indexOf(0x0a);
    if (nl < 0) {
      if (limit === bytes.length) throw truncated("a text argument ending in a newline");
      throw fail(`text argument longer than the limit of ${limits.maxLineBytes} bytes`);
    }
    const out = bytes.subarray(pos, pos + nl);
    pos += nl + 1;
    return out;
  };
  const text = () => LATIN1.decode(line());
  const utf8 = (b: Uint8Array, what: string): string => {
    try {
      return UTF8.decode(b);
    } catch (e) {
      throw fail(`${what} is not valid UTF-8`, e);
    }
  };
  const push = (value: unknown) => {
    if (++pushes > limits.maxObjects) throw fail(`more than the limit of ${limits.maxObjects} values`);
    stack.push(value);
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw fail("stack underflow (the opcode needs a value; is a MARK misplaced?)");
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) throw fail("stack underflow (the opcode needs a value)");
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const outer = metastack.pop();
    if (!outer) throw fail("no MARK to pop to");
    stack = outer;
    return items;
  };
  const memoIndex = (index: number | bigint): number => {
    if (typeof index !== "number" || index < 0 || index >= limits.maxMemoIndex) {
      throw fail(`memo index ${index} is outside [0, ${limits.maxMemoIndex})`);
    }
    return index;
  };
  const put = (index: number | bigint) => memo.set(memoIndex(index), top());
  const get = (index: number | bigint) => {
    const i = memoIndex(index);
    if (!memo.has(i)) throw fail(`memo index ${i} was never stored`);
    push(memo.get(i));
  };
  /** A protocol 0 literal, its SyntaxError reported at the opcode. */
  const literal = <T>(parse: () => T): T => {
    try {
      return parse();
    } catch (e) {
      throw fail((e as Error).message, e);
    }
  };
  const makeGlobal = (module: string, name: string) => new PickleGlobal(canonicalModule(module), name);

  /** A call of `callee(*args, **kwargs)`, as data: refused, unwrapped (copyreg), a hook's, Python's, or inert. */
  const call = (callee: unknown, args: unknown, kwargs?: unknown): unknown => {
    if (!(callee instanceof PickleGlobal)) {
      throw fail(`cannot call ${describePickleValue(callee)}: only globals are called`);
    }
    if (!Array.isArray(args)) {
      throw fail(`arguments of ${callee} are ${describePickleValue(args)}, expected a tuple`);
    }
    if (kwargs !== undefined && !(kwargs instanceof Map)) {
      throw fail(`keyword arguments of ${callee} are ${describePickleValue(kwargs)}, expected a dict`);
    }
    const reason = refusalReason(callee);
    if (reason) throw fail(`refused to call ${callee}: ${reason} (nothing was run)`);
    if (callee.module === "copyreg") {
      // _reconstructor(cls, base, state), __newobj__(cls, *args), __newobj_ex__(cls, args, kwargs): a new cls.
      if (callee.name === "_reconstructor") {
        return call(args[0], args[2] === null || args[2] === undefined ? [] : [args[2]]);
      }
      if (callee.name === "__newobj__") return call(args[0], args.slice(1));
      if (callee.name === "__newobj_ex__") return call(args[0], args[1], args[2]);
    }
    try {
      const hooked = options.construct?.(callee, args, kwargs as Map<unknown, unknown> | undefined);
      if (hooked !== undefined) return hooked;
      const data = pythonData(callee, args, kwargs as Map<unknown, unknown> | undefined);
      if (data !== undefined) return data;
    } catch (e) {
      if (e instanceof WeightsError) throw e;
      throw fail(`cannot build ${callee}: ${(e as Error)?.message ?? e}`, e);
    }
    return new PickleObject(
      callee.module,
      callee.name,
      Object.freeze([...args]),
      kwargs as Map<unknown, unknown> | undefined,
    );
  };

  const build = (target: unknown, state: unknown) => {
    if (target instanceof PickleObject) {
      if (target.state instanceof Map && state instanceof Map) {
        for (const [k, v] of state) target.state.set(k, v);
      } else target.state = state;
    } else if (isNamespaceObject(target)) {
      const [fields, slots] = Array.isArray(state) && state.length === 2 ? state : [state, null];
      for (const part of [fields, slots]) {
        if (part instanceof Map) { for (const [k, v] of part) if (typeof k === "string") target[k] = v; }
      }
    } else if (typeof target === "object" && target !== null) {
      setPickleAttributes(target, state);
    } else {
      throw fail(`cannot BUILD ${describePickleValue(target)}`);
    }
  };

  const setItems = (target: unknown, items: unknown[]) => {
    const map = target instanceof Map ? target : target instanceof PickleObject ? target.items : null;
    if (!map) throw fail(`cannot set items on ${describePickleValue(target)}, expected a dict`);
    if (items.length % 2 !== 0) throw fail(`SETITEMS got ${items.length} values, expected key-value pairs`);
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
  };

  const append = (target: unknown, items: unknown[]) => {
    const list = Array.isArray(target) && !Object.isFrozen(target)
      ? target
      : target instanceof PickleObject
      ? target.list
      : null;
    if (!list) throw fail(`cannot append to ${describePickleValue(target)}, expected a list`);
    for (const item of items) list.push(item);
  };

  const persistent = (pid: unknown) => {
    if (!options.persistentLoad) throw fail("a persistent id, but this pickle takes none");
    try {
      return options.persistentLoad(pid);
    } catch (e) {
      if (e instanceof WeightsError) throw e;
      throw fail(
        `cannot resolve the persistent id ${describePickleValue(pid)}: ${(e as Error)?.message ?? e}`,
        e,
      );
    }
  };

  while (true) {
    op = pos;
    if (pos >= bytes.length) throw truncated(1);
    const code = bytes[pos++];
    switch (code) {
      case 0x80: // PROTO
        protocol = u8();
        if (protocol > 5) throw fail(`unsupported pickle protocol ${protocol}: expected 0 to 5`);
        break;
      case 0x95: { // FRAME: a length hint only
        const length = u64();
        if (length > bytes.length - pos) {
          const e = fail(
            `truncated: frame of ${length} bytes is past the end of the input (${
              bytes.length - pos
            } bytes left)`,
          );
          truncations.add(e);
          throw e;
        }
        break;
      }
      case 0x2e: { // STOP
        const value = pop();
        const problem = nestingProblem(value, limits.maxDepth);
        if (problem) throw fail(problem);
        return { value, end: pos, protocol };
      }
      case 0x28: // MARK
        if (metastack.length >= limits.maxDepth) {
          throw fail(`MARKs nest deeper than the limit of ${limits.maxDepth}`);
        }
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x49: { // INT
        const t = text();
        push(t === "00" ? false : t === "01" ? true : literal(() => intValue(parseInt0(t))));
        break;
      }
      case 0x4a: // BININT
        push(i32());
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x4c: { // LONG
        const t = text().replace(/L$/, "");
        push(literal(() => intValue(parseInt0(t))));
        break;
      }
      case 0x8a: // LONG1
        push(decodeLong(sized(u8(), "LONG1")));
        break;
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) throw fail(`LONG4 has a negative byte count ${n}`);
        push(decodeLong(sized(n, "LONG4")));
        break;
      }
      case 0x46: { // FLOAT
        const t = text();
        push(literal(() => parseFloatText(t)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        take(8);
        push(view.getFloat64(pos - 8, false));
        break;
      case 0x53: { // STRING
        const raw = line();
        const q = raw[0];
        if (raw.length < 2 || raw[raw.length - 1] !== q || (q !== 0x22 && q !== 0x27)) {
          throw fail("STRING argument is not quoted");
        }
        try {
          push(decodePy2String(escapeDecode(raw.subarray(1, raw.length - 1))));
        } catch (e) {
          throw fail(`STRING argument: ${(e as Error).message}`, e);
        }
        break;
      }
      case 0x54: { // BINSTRING
        const n = i32();
        if (n < 0) throw fail(`BINSTRING has a negative byte count ${n}`);
        push(decodePy2String(sized(n, "string")));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(decodePy2String(sized(u8(), "string")));
        break;
      case 0x56: // UNICODE
        push(rawUnicodeEscape(line()));
        break;
      case 0x58: // BINUNICODE
        push(utf8(sized(u32(), "string"), "string"));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(utf8(sized(u8(), "string"), "string"));
        break;
      case 0x8d: // BINUNICODE8
        push(utf8(sized(u64(), "string"), "string"));
        break;
      case 0x42: // BINBYTES
        push(sized(u32(), "bytes").slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(sized(u8(), "bytes").slice());
        break;
      case 0x8e: // BINBYTES8
        push(sized(u64(), "bytes").slice());
        break;
      case 0x96: // BYTEARRAY8
        push(sized(u64(), "bytearray").slice());
        break;
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        throw fail("out-of-band buffers (pickle protocol 5 NEXT_BUFFER/READONLY_BUFFER) are not supported");
      case 0x29: // EMPTY_TUPLE
        push(Object.freeze([]));
        break;
      case 0x85: // TUPLE1
        push(Object.freeze([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        push(Object.freeze([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        push(Object.freeze([pop(), b, c]));
        break;
      }
      case 0x74: // TUPLE
        push(Object.freeze(popMark()));
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: { // APPEND
        const value = pop();
        append(top(), [value]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x64: { // DICT
        const items = popMark();
        const map = new Map();
        setItems(map, items);
        push(map);
        break;
      }
      case 0x73: { // SETITEM
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new Set());
        break;
      case 0x90: { // ADDITEMS
        const items = popMark();
        const target = top();
        if (!(target instanceof Set)) {
          throw fail(`cannot add items to ${describePickleValue(target)}, expected a set`);
        }
        for (const item of items) target.add(item);
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      case 0x70: { // PUT
        const t = text();
        put(literal(() => intValue(parseInt0(t))));
        break;
      }
      case 0x71: // BINPUT
        put(u8());
        break;
      case 0x72: // LONG_BINPUT
        put(u32());
        break;
      case 0x94: // MEMOIZE
        put(memo.size);
        break;
      case 0x67: { // GET
        const t = text();
        get(literal(() => intValue(parseInt0(t))));
        break;
      }
      case 0x68: // BINGET
        get(u8());
        break;
      case 0x6a: // LONG_BINGET
        get(u32());
        break;
      case 0x63: { // GLOBAL
        const module = utf8(line(), "GLOBAL module");
        const name = utf8(line(), "GLOBAL name");
        push(makeGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          throw fail("STACK_GLOBAL needs two strings");
        }
        push(makeGlobal(module, name));
        break;
      }
      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: // EXT4
        throw fail("extension codes (EXT1/EXT2/EXT4) are not supported: no extension is registered");
      case 0x52: { // REDUCE
        const args = pop();
        const callee = pop();
        push(call(callee, args));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        const cls = pop();
        push(call(cls, args));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        push(call(cls, args, kwargs));
        break;
      }
      case 0x69: { // INST
        const module = text();
        const name = text();
        push(call(makeGlobal(module, name), popMark()));
        break;
      }
      case 0x6f: { // OBJ
        const items = popMark();
        if (items.length === 0) throw fail("OBJ needs a class");
        push(call(items[0], items.slice(1)));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        build(top(), state);
        break;
      }
      case 0x50: // PERSID
        push(persistent(text()));
        break;
      case 0x51: // BINPERSID
        push(persistent(pop()));
        break;
      default:
        throw fail(`unknown opcode 0x${code.toString(16).padStart(2, "0")}`);
    }
  }
}
