/**
 * A minimal ONNX model writer: just enough protobuf to build the benchmark's peer models (a single Conv, a
 * single MatMul, the whole BiT graph) in code, with float32 initialisers.
 *
 * Protobuf wire format: each field is a varint key `(field << 3) | wire type` followed by a varint
 * (type 0), 8 bytes (type 1), a varint length and bytes (type 2), or 4 bytes (type 5). Field numbers are
 * those of onnx/onnx.proto (IR version 8):
 * - ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 (OperatorSetIdProto: domain 1,
 *   version 2).
 * - GraphProto: node 1, name 2, initializer 5, input 11, output 12.
 * - NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
 * - AttributeProto: name 1, f 2, i 3, floats 7, ints 8, type 20 (FLOAT 1, INT 2, FLOATS 6, INTS 7).
 * - TensorProto: dims 1, data_type 2 (FLOAT 1, INT64 7), name 8, raw_data 9 (little-endian).
 * - ValueInfoProto: name 1, type 2 → TypeProto.tensor_type 1 → elem_type 1, shape 2 → dim 1 →
 *   dim_value 1.
 *
 * This module is browser compatible.
 * @module
 */

/** Grows a byte buffer and writes protobuf fields into it. */
class ProtoWriter {
  #bytes = new Uint8Array(256);
  #length = 0;

  #reserve(n: number): void {
    if (this.#length + n <= this.#bytes.length) return;
    let size = this.#bytes.length * 2;
    while (size < this.#length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = next;
  }

  varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    this.#reserve(10);
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      this.#bytes[this.#length++] = byte;
    } while (v !== 0n);
  }

  key(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  int(field: number, value: number): void {
    this.key(field, 0);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.key(field, 5);
    this.#reserve(4);
    new DataView(this.#bytes.buffer).setFloat32(this.#length, value, true);
    this.#length += 4;
  }

  bytes(field: number, data: Uint8Array): void {
    this.key(field, 2);
    this.varint(data.length);
    this.#reserve(data.length);
    this.#bytes.set(data, this.#length);
    this.#length += data.length;
  }

  string(field: number, text: string): void {
    this.bytes(field, new TextEncoder().encode(text));
  }

  message(field: number, write: (w: ProtoWriter) => void): void {
    const inner = new ProtoWriter();
    write(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }
}

/** An attribute value: an int, a float, a list of ints, or a list of floats (tagged). */
export type OnnxAttribute =
  | { readonly int: number }
  | { readonly float: number }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] };

/** One graph node. */
export interface OnnxNode {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly attributes?: Readonly<Record<string, OnnxAttribute>>;
}

/** A constant tensor (float32 or int64). */
export interface OnnxInitializer {
  readonly name: string;
  readonly dims: readonly number[];
  readonly data: Float32Array | BigInt64Array;
}

/** A graph input or output: a float32 tensor of fixed shape. */
export interface OnnxValue {
  readonly name: string;
  readonly dims: readonly number[];
}

/** A whole single-graph model. */
export interface OnnxModel {
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxInitializer[];
  readonly inputs: readonly OnnxValue[];
  readonly outputs: readonly OnnxValue[];
  /** Default opset 17 (ReduceMean still takes `axes` as an attribute). */
  readonly opset?: number;
}

const FLOAT = 1;
const INT64 = 7;

function writeValue(w: ProtoWriter, v: OnnxValue): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, FLOAT);
      tensor.message(2, (shape) => {
        for (const d of v.dims) shape.message(1, (dim) => dim.int(1, d));
      });
    }));
}

function writeAttribute(w: ProtoWriter, name: string, a: OnnxAttribute): void {
  w.string(1, name);
  if ("int" in a) {
    w.int(3, a.int);
    w.int(20, 2);
  } else if ("float" in a) {
    w.float(2, a.float);
    w.int(20, 1);
  } else if ("ints" in a) {
    for (const i of a.ints) w.int(8, i);
    w.int(20, 7);
  } else {
    for (const f of a.floats) w.float(7, f);
    w.int(20, 6);
  }
}

/**
 * Encodes `model` as ONNX protobuf bytes.
 *
 * @param model Nodes, initialisers, inputs and outputs.
 * @returns The bytes of a `.onnx` file.
 * @example
 * ```ts
 * const bytes = encodeOnnxModel({
 *   nodes: [{ op: "Relu", inputs: ["x"], outputs: ["y"] }],
 *   initializers: [],
 *   inputs: [{ name: "x", dims: [4] }],
 *   outputs: [{ name: "y", dims: [4] }],
 * });
 * ```
 */
export function encodeOnnxModel(model: OnnxModel): Uint8Array {
  const w = new ProtoWriter();
  w.int(1, 8);
  w.string(2, "derm-webgpu bench");
  w.message(7, (g) => {
    model.nodes.forEach((node, i) =>
      g.message(1, (n) => {
        for (const x of node.inputs) n.string(1, x);
        for (const y of node.outputs) n.string(2, y);
        n.string(3, node.name ?? `n${i}`);
        n.string(4, node.op);
        for (const [name, a] of Object.entries(node.attributes ?? {})) {
          n.message(5, (attr) => writeAttribute(attr, name, a));
        }
      })
    );
    g.string(2, "bench");
    for (const t of model.initializers) {
      g.message(5, (tensor) => {
        for (const d of t.dims) tensor.int(1, d);
        tensor.int(2, t.data instanceof Float32Array ? FLOAT : INT64);
        tensor.string(8, t.name);
        tensor.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      });
    }
    for (const v of model.inputs) g.message(11, (vi) => writeValue(vi, v));
    for (const v of model.outputs) g.message(12, (vi) => writeValue(vi, v));
  });
  w.message(8, (o) => {
    o.string(1, "");
    o.int(2, model.opset ?? 17);
  });
  return w.finish();
}
