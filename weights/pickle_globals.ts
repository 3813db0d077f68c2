/**
 * What calling a global means to the pickle reader (`pickle.ts`), which never imports or runs anything.
 *
 * The reader's safety does not rest on this file: whatever a pickle names, the result is data or an inert
 * {@linkcode PickleObject}. This file decides three things on top of that:
 * 1. **Refused globals.** A call (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ, or through `copyreg`) of a global
 *    that could only be there to reach the system is an error, so a hostile file fails loudly instead of
 *    loading with a placeholder in it: any attribute of the modules in {@linkcode REFUSED_MODULES} (and
 *    their submodules), any `builtins` name that is not a data type ({@linkcode DATA_BUILTINS}: `eval`,
 *    `exec`, `compile`, `open`, `__import__`, `getattr`... are refused), and any name with a dunder part
 *    (`__class__`, `__globals__`...) outside `copyreg`'s `__newobj__`/`__newobj_ex__`. Python 2 module
 *    names are mapped first (`__builtin__` -> `builtins`), so they cannot dodge the rule. Merely naming a
 *    refused global (GLOBAL without a call) is not an error: it stays an inert {@linkcode PickleGlobal}.
 * 2. **Python data.** Calls of data types become data ({@linkcode pythonData}): `collections.OrderedDict`
 *    and `defaultdict` -> `Map`; `set`, `frozenset` -> `Set`; `list`, `tuple`, `dict`, `int`, `float`,
 *    `str`, `bool`, `bytes`, `bytearray`, `complex`, `slice`; `_codecs.encode(text, "latin1")` (how
 *    protocol 2 writes `bytes`) -> `Uint8Array`; `argparse.Namespace` -> a plain object of its fields;
 *    NumPy scalars (`numpy.core.multiarray.scalar(dtype, bytes)`, the form of `np.float64(0.5)` in a
 *    checkpoint) -> number, bigint or boolean.
 * 3. Everything else is left to the caller's hook (PyTorch's rebuild functions, in `pytorch.ts`) and then
 *    becomes a placeholder.
 *
 * This module is browser compatible.
 * @module
 */
import { float16BitsToNumber } from "./dtypes.ts";
import { describePickleValue, namespaceObject, type PickleGlobal, PickleObject } from "./pickle_values.ts";

/** Python 2 module names and their Python 3 names, as `pickle`'s `fix_imports` maps them. */
const PY2_MODULES: Readonly<Record<string, string>> = {
  __builtin__: "builtins",
  copy_reg: "copyreg",
  cPickle: "pickle",
  cStringIO: "io",
  StringIO: "io",
  urllib2: "urllib",
  httplib: "http",
  SocketServer: "socketserver",
  _winreg: "winreg",
  thread: "_thread",
};

/** The Python 3 name of a module named in a pickle. */
export function canonicalModule(module: string): string {
  const head = module.split(".")[0];
  return Object.hasOwn(PY2_MODULES, head) ? PY2_MODULES[head] + module.slice(head.length) : module;
}

const PROCESSES = "runs programs, processes or signals";
const CODE = "imports or runs Python code";
const FILES = "reads or writes files";
const NETWORK = "reaches the network";
const PICKLES = "loads further pickled or marshalled code";

/** Modules (with their submodules) whose attributes are refused when called, and why. */
export const REFUSED_MODULES: Readonly<Record<string, string>> = {
  os: PROCESSES,
  posix: PROCESSES,
  nt: PROCESSES,
  subprocess: PROCESSES,
  _posixsubprocess: PROCESSES,
  pty: PROCESSES,
  commands: PROCESSES,
  popen2: PROCESSES,
  platform: PROCESSES,
  signal: PROCESSES,
  multiprocessing: PROCESSES,
  threading: PROCESSES,
  _thread: PROCESSES,
  asyncio: PROCESSES,
  ctypes: "calls native code",
  sys: CODE,
  importlib: CODE,
  imp: CODE,
  runpy: CODE,
  zipimport: CODE,
  site: CODE,
  code: CODE,
  codeop: CODE,
  pdb: CODE,
  bdb: CODE,
  timeit: CODE,
  trace: CODE,
  profile: CODE,
  cProfile: CODE,
  "numpy.testing": CODE,
  "torch.hub": "downloads and runs code",
  pickle: PICKLES,
  _pickle: PICKLES,
  marshal: PICKLES,
  shelve: PICKLES,
  dill: PICKLES,
  joblib: PICKLES,
  shutil: FILES,
  tempfile: FILES,
  io: FILES,
  _io: FILES,
  pathlib: FILES,
  glob: FILES,
  fileinput: FILES,
  socket: NETWORK,
  socketserver: NETWORK,
  ssl: NETWORK,
  http: NETWORK,
  urllib: NETWORK,
  ftplib: NETWORK,
  smtplib: NETWORK,
  telnetlib: NETWORK,
  webbrowser: NETWORK,
};

/** The `builtins` that are data types and may be called; every other `builtins` name is refused. */
export const DATA_BUILTINS: ReadonlySet<string> = new Set([
  "set",
  "frozenset",
  "slice",
  "complex",
  "bytes",
  "bytearray",
  "list",
  "tuple",
  "dict",
  "int",
  "float",
  "str",
  "bool",
  "range",
  "object",
]);

const COPYREG_CALLS = new Set(["__newobj__", "__newobj_ex__"]);

/**
 * Why calling `global` is refused, or `undefined` when it is not (see the module doc for the rule).
 *
 * @param global The callee, its module already canonical.
 * @returns The reason, for the message.
 *
 * @example
 * ```ts
 * refusalReason(new PickleGlobal("os", "system")); // 'module "os" runs programs, processes or signals'
 * refusalReason(new PickleGlobal("collections", "OrderedDict")); // undefined
 * ```
 */
export function refusalReason(global: PickleGlobal): string | undefined {
  const parts = global.module.split(".");
  for (let i = parts.length; i > 0; i--) {
    const prefix = parts.slice(0, i).join(".");
    if (Object.hasOwn(REFUSED_MODULES, prefix)) return `module "${prefix}" ${REFUSED_MODULES[prefix]}`;
  }
  if (global.module === "builtins" && !DATA_BUILTINS.has(global.name)) {
    return `builtins.${global.name} is not a data type (only ${[...DATA_BUILTINS].join(", ")} may be called)`;
  }
  const dunder = global.name.split(".").find((p) => p.length > 4 && p.startsWith("__") && p.endsWith("__"));
  if (dunder && !(global.module === "copyreg" && COPYREG_CALLS.has(global.name))) {
    return `"${dunder}" reaches into Python's internals`;
  }
  return undefined;
}

/** The items of a Python iterable: list/tuple elements, set members, dict keys, characters. */
function iterate(value: unknown, what: string): unknown[] {
  if (Array.isArray(value)) return value;
  if (value instanceof Set) return [...value];
  if (value instanceof Map) return [...value.keys()];
  if (typeof value === "string") return [...value];
  if (value instanceof Uint8Array) return [...value];
  throw new TypeError(`${what} expects an iterable, got ${describePickleValue(value)}`);
}

function dictFrom(args: readonly unknown[], kwargs: ReadonlyMap<unknown, unknown> | undefined, what: string) {
  const out = new Map<unknown, unknown>();
  const source = args[0];
  if (source instanceof Map) {
    for (const [k, v] of source) out.set(k, v);
  } else if (source !== undefined && source !== null) {
    for (const pair of iterate(source, what)) {
      if (!Array.isArray(pair) || pair.length !== 2) {
        throw new TypeError(`${what} expects (key, value) pairs, got ${describePickleValue(pair)}`);
      }
      out.set(pair[0], pair[1]);
    }
  }
  for (const [k, v] of kwargs ?? []) out.set(k, v);
  return out;
}

function encodeText(text: unknown, encoding: unknown, what: string): Uint8Array {
  if (typeof text !== "string") {
    throw new TypeError(`${what} expects a str, got ${describePickleValue(text)}`);
  }
  const name = typeof encoding === "string" ? encoding.toLowerCase().replace(/_/g, "-") : "utf-8";
  if (name === "latin1" || name === "latin-1" || name === "iso-8859-1" || name === "ascii") {
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 255) throw new TypeError(`${what}: character ${c} does not fit ${name}`);
      out[i] = c;
    }
    return out;
  }
  if (name === "utf-8" || name === "utf8") return new TextEncoder().encode(text);
  throw new TypeError(`${what}: unsupported encoding ${JSON.stringify(encoding)}`);
}

function bytesFrom(args: readonly unknown[], what: string): Uint8Array | undefined {
  const [source, encoding] = args;
  if (source === undefined) return new Uint8Array(0);
  if (source instanceof Uint8Array) return source.slice();
  if (typeof source === "string") return encodeText(source, encoding, what);
  if (Array.isArray(source) && source.every((b) => Number.isInteger(b) && b >= 0 && b < 256)) {
    return Uint8Array.from(source as number[]);
  }
  return undefined; // bytes(n) and other forms stay placeholders
}

function number(value: unknown, what: string): number {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "boolean") return value ? 1 : 0;
  throw new TypeError(`${what} expects a number, got ${describePickleValue(value)}`);
}

function frozenRecord(fields: Record<string, unknown>): Readonly<Record<string, unknown>> {
  return Object.freeze(Object.assign(Object.create(null), fields));
}

/** Sizes and readers of the NumPy scalar types seen in checkpoints, by dtype code. */
const NUMPY_SCALARS: Readonly<Record<string, [number, (v: DataView, little: boolean) => unknown]>> = {
  f2: [2, (v, le) => float16BitsToNumber(v.getUint16(0, le))],
  f4: [4, (v, le) => v.getFloat32(0, le)],
  f8: [8, (v, le) => v.getFloat64(0, le)],
  i1: [1, (v) => v.getInt8(0)],
  i2: [2, (v, le) => v.getInt16(0, le)],
  i4: [4, (v, le) => v.getInt32(0, le)],
  i8: [8, (v, le) => safeBig(v.getBigInt64(0, le))],
  u1: [1, (v) => v.getUint8(0)],
  u2: [2, (v, le) => v.getUint16(0, le)],
  u4: [4, (v, le) => v.getUint32(0, le)],
  u8: [8, (v, le) => safeBig(v.getBigUint64(0, le))],
  b1: [1, (v) => v.getUint8(0) !== 0],
};

function safeBig(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value;
}

/** `numpy.core.multiarray.scalar(dtype, data)`: the value, or `undefined` for a dtype not read here. */
function numpyScalar(args: readonly unknown[], what: string): unknown {
  const [dtype, data] = args;
  if (!(dtype instanceof PickleObject) || dtype.name !== "dtype" || typeof dtype.args[0] !== "string") {
    return undefined;
  }
  const code = dtype.args[0].replace(/^[<>|=]/, "");
  if (!Object.hasOwn(NUMPY_SCALARS, code)) return undefined;
  const [size, read] = NUMPY_SCALARS[code];
  const bytes = data instanceof Uint8Array
    ? data
    : typeof data === "string"
    ? encodeText(data, "latin1", what)
    : null;
  if (!bytes || bytes.length !== size) {
    throw new TypeError(`${what} of dtype ${code} expects ${size} bytes, got ${describePickleValue(data)}`);
  }
  // The byte order is the dtype's BUILD state (version, order, ...); "<", "|" and "=" read as little-endian.
  const order = Array.isArray(dtype.state) ? dtype.state[1] : dtype.args[0][0];
  return read(new DataView(bytes.buffer, bytes.byteOffset, size), order !== ">");
}

type Construct = (
  args: readonly unknown[],
  kwargs: ReadonlyMap<unknown, unknown> | undefined,
  what: string,
) => unknown;

const PYTHON_DATA: Readonly<Record<string, Construct>> = {
  "collections.OrderedDict": (args, kwargs, what) => dictFrom(args, kwargs, what),
  "collections.defaultdict": (args, kwargs, what) => dictFrom(args.slice(1), kwargs, what),
  "builtins.dict": (args, kwargs, what) => dictFrom(args, kwargs, what),
  "builtins.set": (args, _, what) => new Set(args.length ? iterate(args[0], what) : []),
  "builtins.frozenset": (args, _, what) => new Set(args.length ? iterate(args[0], what) : []),
  "builtins.list": (args, _, what) => args.length ? [...iterate(args[0], what)] : [],
  "builtins.tuple": (args, _, what) => Object.freeze(args.length ? [...iterate(args[0], what)] : []),
  "builtins.slice": (args) =>
    frozenRecord(
      args.length === 1
        ? { start: null, stop: args[0], step: null }
        : { start: args[0] ?? null, stop: args[1] ?? null, step: args[2] ?? null },
    ),
  "builtins.complex": (args, _, what) =>
    frozenRecord({ real: number(args[0] ?? 0, what), imag: number(args[1] ?? 0, what) }),
  "builtins.bytes": (args, _, what) => bytesFrom(args, what),
  "builtins.bytearray": (args, _, what) => bytesFrom(args, what),
  "builtins.int": (args) => typeof args[0] === "number" ? Math.trunc(args[0]) : undefined,
  "builtins.float": (args) => typeof args[0] === "number" ? args[0] : undefined,
  "builtins.str": (args) => typeof args[0] === "string" ? args[0] : undefined,
  "builtins.bool": (args) => args.length === 0 ? false : typeof args[0] === "boolean" ? args[0] : undefined,
  "_codecs.encode": (args, _, what) => encodeText(args[0], args[1], what),
  "argparse.Namespace": (_, kwargs) => {
    const ns = namespaceObject();
    for (const [k, v] of kwargs ?? []) if (typeof k === "string") ns[k] = v;
    return ns;
  },
  "numpy.core.multiarray.scalar": (args, _, what) => numpyScalar(args, what),
  "numpy._core.multiarray.scalar": (args, _, what) => numpyScalar(args, what),
};

/**
 * The data a call of a Python data type gives, or `undefined` when `global` is not one (see the module doc).
 *
 * @param global The callee (module canonical).
 * @param args Positional arguments.
 * @param kwargs Keyword arguments, when any.
 * @returns The value, or `undefined`.
 * @throws {TypeError} when the arguments do not fit the type (an OrderedDict of non-pairs...).
 *
 * @example
 * ```ts
 * pythonData(new PickleGlobal("builtins", "set"), [[1, 2]]); // Set {1, 2}
 * ```
 */
export function pythonData(
  global: PickleGlobal,
  args: readonly unknown[],
  kwargs?: ReadonlyMap<unknown, unknown>,
): unknown {
  const key = `${global.module}.${global.name}`;
  return Object.hasOwn(PYTHON_DATA, key) ? PYTHON_DATA[key](args, kwargs, key) : undefined;
}
