/**
 * A small pickle writer for tests: a tree of {@linkcode Py} values becomes protocol 2 opcodes the way
 * CPython's pickler writes them (BINPUT after every container and call, BINGET for a value seen before),
 * plus {@linkcode op} for hand-made (hostile) opcode sequences.
 * @module
 */

/** A float (a plain number writes as an int when it is an integer). */
export interface PyFloat {
  readonly py: "float";
  readonly value: number;
}
/** A tuple. */
export interface PyTuple {
  readonly py: "tuple";
  readonly items: readonly Py[];
}
/** A dict with any keys, in order. */
export interface PyDict {
  readonly py: "dict";
  readonly entries: readonly (readonly [Py, Py])[];
}
/** A global (GLOBAL). */
export interface PyGlobal {
  readonly py: "global";
  readonly module: string;
  readonly name: string;
}
/** `fn(*args)` (REDUCE), optionally followed by BUILD `state` and SETITEMS `items`. */
export interface PyCall {
  readonly py: "call";
  readonly fn: Py;
  readonly args: readonly Py[];
  readonly state?: Py;
  readonly items?: readonly (readonly [Py, Py])[];
}
/** `cls.__new__(cls, *args)` (NEWOBJ), optionally followed by BUILD `state`. */
export interface PyNewObj {
  readonly py: "newobj";
  readonly cls: Py;
  readonly args: readonly Py[];
  readonly state?: Py;
}
/** A persistent id (BINPERSID). */
export interface PyPersid {
  readonly py: "persid";
  readonly pid: Py;
}
/** Raw opcode bytes spliced in as one value. */
export interface PyRaw {
  readonly py: "raw";
  readonly bytes: Uint8Array;
}

/** A value to pickle: JSON-like data, or one of the nodes above. Objects seen twice are memoised. */
export type Py =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly Py[]
  | PyFloat
  | PyTuple
  | PyDict
  | PyGlobal
  | PyCall
  | PyNewObj
  | PyPersid
  | PyRaw;

/** A float. */
export const float = (value: number): PyFloat => ({ py: "float", value });
/** A tuple. */
export const tuple = (...items: Py[]): PyTuple => ({ py: "tuple", items });
/** A dict. */
export const dict = (entries: Record<string, Py> | (readonly [Py, Py])[]): PyDict => ({
  py: "dict",
  entries: Array.isArray(entries) ? entries : Object.entries(entries),
});
/** A global. */
export const global = (module: string, name: string): PyGlobal => ({ py: "global", module, name });
/** `fn(*args)` through REDUCE. */
export const call = (fn: Py, args: Py[], extra: { state?: Py; items?: [Py, Py][] } = {}): PyCall => ({
  py: "call",
  fn,
  args,
  ...extra,
});
/** `cls.__new__(cls, *args)` through NEWOBJ. */
export const newobj = (cls: Py, args: Py[], state?: Py): PyNewObj => ({ py: "newobj", cls, args, state });
/** A persistent id. */
export const persid = (pid: Py): PyPersid => ({ py: "persid", pid });
/** Raw opcodes. */
export const raw = (...parts: (number | string | Uint8Array)[]): PyRaw => ({
  py: "raw",
  bytes: op(...parts),
});

const enc = new TextEncoder();

/** Bytes from opcode bytes, Latin-1 strings and byte arrays. */
export function op(...parts: (number | string | Uint8Array)[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === "number") out.push(p);
    else if (typeof p === "string") { for (const c of p) out.push(c.charCodeAt(0)); }
    else out.push(...p);
  }
  return Uint8Array.from(out);
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/** Writes Py values as protocol 2 opcodes. */
class Writer {
  out: number[] = [];
  memo = new Map<object, number>();

  emit(...bytes: number[]) {
    for (const b of bytes) this.out.push(b);
  }

  memoize(value: object) {
    const index = this.memo.size;
    this.memo.set(value, index);
    if (index < 256) this.emit(0x71, index);
    else this.emit(0x72, ...u32(index));
  }

  int(n: number | bigint) {
    if (typeof n === "number" && n >= 0 && n < 256) this.emit(0x4b, n);
    else if (typeof n === "number" && n >= 0 && n < 65536) this.emit(0x4d, n & 0xff, n >> 8);
    else if (typeof n === "number" && n >= -(2 ** 31) && n < 2 ** 31) this.emit(0x4a, ...u32(n));
    else {
      let v = BigInt(n);
      const bytes: number[] = [];
      while (true) {
        bytes.push(Number(v & 0xffn));
        v >>= 8n;
        if (
          (v === 0n && !(bytes[bytes.length - 1] & 0x80)) || (v === -1n && bytes[bytes.length - 1] & 0x80)
        ) break;
      }
      this.emit(0x8a, bytes.length, ...bytes);
    }
  }

  write(value: Py): void {
    if (value === null) return this.emit(0x4e);
    if (value === true) return this.emit(0x88);
    if (value === false) return this.emit(0x89);
    if (typeof value === "number" || typeof value === "bigint") {
      if (typeof value === "number" && !Number.isInteger(value)) return this.write(float(value));
      return this.int(value);
    }
    if (typeof value === "object" && this.memo.has(value)) {
      const i = this.memo.get(value)!;
      return i < 256 ? this.emit(0x68, i) : this.emit(0x6a, ...u32(i));
    }
    if (typeof value === "string") {
      const b = enc.encode(value);
      return this.emit(0x58, ...u32(b.length), ...b);
    }
    if (value instanceof Uint8Array) {
      // Protocol 2 writes bytes as _codecs.encode(latin1 text, "latin1").
      this.write(global("_codecs", "encode"));
      this.write(tuple(String.fromCharCode(...value), "latin1"));
      this.emit(0x52);
      return this.memoize(value);
    }
    if (Array.isArray(value)) {
      this.emit(0x5d);
      this.memoize(value);
      if (value.length) {
        this.emit(0x28);
        for (const v of value) this.write(v);
        this.emit(0x65);
      }
      return;
    }
    const node = value as Exclude<Py, null | boolean | number | bigint | string | Uint8Array | readonly Py[]>;
    switch (node.py) {
      case "float": {
        const b = new Uint8Array(8);
        new DataView(b.buffer).setFloat64(0, node.value, false);
        return this.emit(0x47, ...b);
      }
      case "tuple": {
        const n = node.items.length;
        if (n === 0) return this.emit(0x29);
        if (n > 3) this.emit(0x28);
        for (const v of node.items) this.write(v);
        this.emit(n === 1 ? 0x85 : n === 2 ? 0x86 : n === 3 ? 0x87 : 0x74);
        return this.memoize(node);
      }
      case "dict":
        this.emit(0x7d);
        this.memoize(node);
        this.items(node.entries);
        return;
      case "global": {
        this.emit(0x63, ...enc.encode(`${node.module}\n${node.name}\n`));
        return this.memoize(node);
      }
      case "call":
        this.write(node.fn);
        this.write(tuple(...node.args));
        this.emit(0x52);
        this.memoize(node);
        if (node.items) this.items(node.items);
        if (node.state !== undefined) {
          this.write(node.state);
          this.emit(0x62);
        }
        return;
      case "newobj":
        this.write(node.cls);
        this.write(tuple(...node.args));
        this.emit(0x81);
        this.memoize(node);
        if (node.state !== undefined) {
          this.write(node.state);
          this.emit(0x62);
        }
        return;
      case "persid":
        this.write(node.pid);
        return this.emit(0x51);
      case "raw":
        return this.emit(...node.bytes);
    }
  }

  items(entries: readonly (readonly [Py, Py])[]) {
    if (entries.length === 0) return;
    if (entries.length === 1) {
      this.write(entries[0][0]);
      this.write(entries[0][1]);
      return this.emit(0x73);
    }
    this.emit(0x28);
    for (const [k, v] of entries) {
      this.write(k);
      this.write(v);
    }
    this.emit(0x75);
  }
}

/**
 * Pickles `value` with protocol 2 (PROTO 2 ... STOP).
 *
 * @param value The tree.
 * @returns The pickle.
 */
export function pickle(value: Py): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  w.emit(0x80, 2);
  w.write(value);
  w.emit(0x2e);
  return Uint8Array.from(w.out);
}
