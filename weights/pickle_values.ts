/**
 * The values the pickle reader (`pickle.ts`) builds: Python data as plain JavaScript, and inert records for
 * what would have been code. Nothing here can run anything: a {@linkcode PickleGlobal} is two strings.
 *
 * Python -> JavaScript: `None` -> `null`; `bool` -> boolean; `int` -> number when a safe integer, otherwise
 * bigint; `float` -> number; `str` -> string; `bytes`/`bytearray` -> `Uint8Array`; `list` -> array; `tuple`
 * -> frozen array; `dict` (and `OrderedDict`, `defaultdict`) -> `Map` with the original keys; `set` and
 * `frozenset` -> `Set`; `argparse.Namespace` -> a null-prototype object of its fields
 * ({@linkcode isNamespaceObject}); a global -> {@linkcode PickleGlobal}; an object of any other class ->
 * {@linkcode PickleObject}.
 *
 * This module is browser compatible.
 * @module
 */

/** A module attribute named by a pickle (GLOBAL, STACK_GLOBAL, INST): its name only, never imported. */
export class PickleGlobal {
  /** Module, e.g. "collections" (Python 2 names are mapped: `__builtin__` -> `builtins`). */
  readonly module: string;
  /** Attribute name, e.g. "OrderedDict" (may be dotted from protocol 4). */
  readonly name: string;
  /** Creates the record. */
  constructor(module: string, name: string) {
    this.module = module;
    this.name = name;
  }
  /** `module.name`. */
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

/**
 * An object of a class the reader does not turn into data: its class and everything a pickle said to build
 * it with, kept as data. Fields are filled by the opcodes that built it.
 */
export class PickleObject {
  /** The class's module. */
  readonly module: string;
  /** The class's name. */
  readonly name: string;
  /** Positional arguments of the call (REDUCE, NEWOBJ, INST, OBJ). */
  readonly args: readonly unknown[];
  /** Keyword arguments (NEWOBJ_EX), when any. */
  readonly kwargs: ReadonlyMap<unknown, unknown> | undefined;
  /** State given by BUILD (`__setstate__` / `__dict__`), `undefined` when none. */
  state: unknown = undefined;
  /** Items set on it (SETITEM, SETITEMS), for dict subclasses. */
  readonly items: Map<unknown, unknown> = new Map();
  /** Items appended to it (APPEND, APPENDS), for list subclasses. */
  readonly list: unknown[] = [];
  /** Creates the record of `module.name(*args, **kwargs)`. */
  constructor(
    module: string,
    name: string,
    args: readonly unknown[],
    kwargs?: ReadonlyMap<unknown, unknown>,
  ) {
    this.module = module;
    this.name = name;
    this.args = args;
    this.kwargs = kwargs;
  }
}

const namespaces = new WeakSet<object>();

/** A new `argparse.Namespace`: a null-prototype object (a "__proto__" field stays a plain field). */
export function namespaceObject(): Record<string, unknown> {
  const object = Object.create(null) as Record<string, unknown>;
  namespaces.add(object);
  return object;
}

/** Whether `value` is an `argparse.Namespace` built by the reader. */
export function isNamespaceObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && namespaces.has(value);
}

const attributes = new WeakMap<object, unknown>();

/**
 * The state a pickle gave (BUILD) to a value that has no fields of its own, such as an `OrderedDict`'s
 * `_metadata` (state dicts carry it) or a state on a tensor.
 *
 * @param value A value from the reader.
 * @returns The BUILD state, or `undefined`.
 */
export function pickleAttributes(value: unknown): unknown {
  return typeof value === "object" && value !== null ? attributes.get(value) : undefined;
}

/** Records BUILD state for a value without fields (used by the reader). */
export function setPickleAttributes(value: object, state: unknown): void {
  attributes.set(value, state);
}

/** A short description of a value for messages: its Python type. */
export function describePickleValue(value: unknown): string {
  if (value === null) return "None";
  if (value === undefined) return "nothing";
  if (typeof value === "boolean") return "a bool";
  if (typeof value === "number") return Number.isInteger(value) ? "an int" : "a float";
  if (typeof value === "bigint") return "an int";
  if (typeof value === "string") return "a str";
  if (value instanceof Uint8Array) return "bytes";
  if (Array.isArray(value)) return Object.isFrozen(value) ? "a tuple" : "a list";
  if (value instanceof Map) return "a dict";
  if (value instanceof Set) return "a set";
  if (value instanceof PickleGlobal) return `the global ${value}`;
  if (value instanceof PickleObject) return `a ${value.module}.${value.name} object`;
  if (isNamespaceObject(value)) return "an argparse.Namespace";
  const name = (value as object).constructor?.name;
  return name ? `a ${name}` : "an object";
}
