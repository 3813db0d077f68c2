/**
 * The variables of a TensorFlow 2 SavedModel, read from `saved_model.pb` without TensorFlow: each
 * variable's name, dtype, shape and the checkpoint key its value is stored under in `variables/`.
 *
 * Messages and field numbers read (from TensorFlow's `saved_model.proto`, `meta_graph.proto`,
 * `saved_object_graph.proto`, `trackable_object_graph.proto`): SavedModel {saved_model_schema_version 1,
 * meta_graphs 2}; MetaGraphDef {meta_info_def 1 {tags 4, tensorflow_version 5, tensorflow_git_version 6},
 * object_graph_def 7}; SavedObjectGraph {nodes 1}; SavedObject {children 1 {node_id 1, local_name 2},
 * slot_variables 3 {original_variable_node_id 1, slot_name 2, slot_variable_node_id 3}, variable 7};
 * SavedVariable {dtype 1, shape 2, trainable 3, name 6}. The graph (`graph_def`, most of the file) is
 * skipped unread.
 *
 * Checkpoint keys: a breadth-first search over `children` from node 0 gives each object the path of its
 * first-found route, each local name escaped ("." -> "..", "/" -> ".S"); a variable's value is stored under
 * `<path>/.ATTRIBUTES/VARIABLE_VALUE`. An optimizer slot is stored under
 * `<variable path>/.OPTIMIZER_SLOT/<optimizer path>/<slot name>/.ATTRIBUTES/VARIABLE_VALUE`.
 *
 * Each variable gets a {@linkcode VariableKind} so a converter can keep the model's weights and drop
 * training state (optimizer slots and counters, metrics, random-generator state, the save counter).
 *
 * This module is browser compatible.
 * @module
 */
import { WeightsError } from "../engine/errors.ts";
import { ProtoReader, WireType } from "./protobuf.ts";
import { parseTensorShape } from "./tensor_bundle.ts";

/** What a variable is for. Only `model` variables are weights; the rest is training state. */
export type VariableKind = "model" | "optimizer_slot" | "optimizer" | "metric" | "rng_state" | "save_counter";

/** Suffix of every variable's checkpoint key. */
export const VARIABLE_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE";

/** One variable of the object graph. */
export interface SavedModelVariable {
  /** Its node id in the SavedObjectGraph. */
  readonly nodeId: number;
  /** `SavedVariable.name` (the TF variable's name, e.g. `conv1/kernel`), "" when absent. */
  readonly name: string;
  /** Checkpoint key of its value in the bundle. */
  readonly key: string;
  /** TensorFlow `DataType` value (1 = DT_FLOAT). */
  readonly dtype: number;
  /** Dimensions, or `undefined` when the rank is unknown. */
  readonly shape: number[] | undefined;
  /** `SavedVariable.trainable`. */
  readonly trainable: boolean;
  /** What it is for. */
  readonly kind: VariableKind;
  /** For optimizer slots: the slot name and the variable it belongs to. */
  readonly slot?: { readonly name: string; readonly ofNodeId: number };
}

/** Facts about a SavedModel and its variables. */
export interface SavedModelGraph {
  /** `saved_model_schema_version`. */
  readonly schemaVersion: number;
  /** Tags of the meta graph read (normally ["serve"]). */
  readonly tags: string[];
  /** TensorFlow version that saved it, "" when not recorded. */
  readonly tensorflowVersion: string;
  /** Number of objects in the object graph. */
  readonly nodes: number;
  /** Variables reachable from the root or as optimizer slots: breadth-first order, then slots by node. */
  readonly variables: SavedModelVariable[];
}

interface SavedObject {
  children: { nodeId: number; localName: string }[];
  slots: { original: number; slotName: string; slotNode: number }[];
  variable?: { dtype: number; shape: number[] | undefined; trainable: boolean; name: string };
}

/**
 * Escapes one local name for a checkpoint key, as TensorFlow does: "." becomes "..", "/" becomes ".S".
 *
 * @param name A child's `local_name`.
 * @returns The escaped path segment.
 */
export function escapeLocalName(name: string): string {
  return name.replaceAll(".", "..").replaceAll("/", ".S");
}

function parseObject(r: ProtoReader): SavedObject {
  const object: SavedObject = { children: [], slots: [] };
  while (r.next()) {
    if (r.field === 1 && r.wireType === WireType.BYTES) {
      const c = r.message();
      let nodeId = 0, localName = "";
      while (c.next()) {
        if (c.field === 1 && c.wireType === WireType.VARINT) nodeId = c.int64();
        else if (c.field === 2 && c.wireType === WireType.BYTES) localName = c.string();
        else c.skip();
      }
      object.children.push({ nodeId, localName });
    } else if (r.field === 3 && r.wireType === WireType.BYTES) {
      const s = r.message();
      let original = 0, slotName = "", slotNode = 0;
      while (s.next()) {
        if (s.field === 1 && s.wireType === WireType.VARINT) original = s.int64();
        else if (s.field === 2 && s.wireType === WireType.BYTES) slotName = s.string();
        else if (s.field === 3 && s.wireType === WireType.VARINT) slotNode = s.int64();
        else s.skip();
      }
      object.slots.push({ original, slotName, slotNode });
    } else if (r.field === 7 && r.wireType === WireType.BYTES) {
      const v = r.message();
      const variable = { dtype: 0, shape: [] as number[] | undefined, trainable: false, name: "" };
      while (v.next()) {
        if (v.field === 1 && v.wireType === WireType.VARINT) variable.dtype = v.varint();
        else if (v.field === 2 && v.wireType === WireType.BYTES) {
          variable.shape = parseTensorShape(v.message());
        } else if (v.field === 3 && v.wireType === WireType.VARINT) variable.trainable = v.bool();
        else if (v.field === 6 && v.wireType === WireType.BYTES) variable.name = v.string();
        else v.skip();
      }
      object.variable = variable;
    } else r.skip();
  }
  return object;
}

interface MetaGraph {
  tags: string[];
  tensorflowVersion: string;
  nodes?: SavedObject[];
}

function parseMetaGraph(r: ProtoReader): MetaGraph {
  const meta: MetaGraph = { tags: [], tensorflowVersion: "" };
  while (r.next()) {
    if (r.field === 1 && r.wireType === WireType.BYTES) {
      const info = r.message();
      while (info.next()) {
        if (info.field === 4 && info.wireType === WireType.BYTES) meta.tags.push(info.string());
        else if (info.field === 5 && info.wireType === WireType.BYTES) meta.tensorflowVersion = info.string();
        else info.skip();
      }
    } else if (r.field === 7 && r.wireType === WireType.BYTES) {
      const graph = r.message();
      meta.nodes = [];
      while (graph.next()) {
        if (graph.field === 1 && graph.wireType === WireType.BYTES) {
          meta.nodes.push(parseObject(graph.message()));
        } else graph.skip();
      }
    } else r.skip();
  }
  return meta;
}

const METRIC_SEGMENTS = new Set(["metrics", "_metrics", "keras_api/metrics"]);
const RNG_SEGMENTS = new Set(["_random_generator", "_generator", "_state_var", "_rng"]);

function classify(path: string[], name: string, underOptimizer: boolean): VariableKind {
  if (underOptimizer || path[0] === "optimizer") return "optimizer";
  if (path.length === 1 && path[0] === "save_counter") return "save_counter";
  if (path.some((s) => METRIC_SEGMENTS.has(s))) return "metric";
  if (path.some((s) => RNG_SEGMENTS.has(s)) || name.endsWith("StateVar")) return "rng_state";
  return "model";
}

/**
 * Reads the variables of a SavedModel from its `saved_model.pb`.
 *
 * @param bytes The whole `saved_model.pb`.
 * @param options `file`: name for messages.
 * @returns Version facts and every variable with its checkpoint key and kind.
 * @throws {WeightsError} naming the file for malformed protobuf (with the byte offset), no meta graph, no
 * object graph (a TF1 SavedModel), or a child or slot naming a node that does not exist.
 *
 * @example
 * ```ts
 * const graph = readSavedModel(await Deno.readFile("derm/saved_model.pb"), { file: "saved_model.pb" });
 * graph.variables.filter((v) => v.kind === "model").length; // 304
 * ```
 */
export function readSavedModel(bytes: Uint8Array, options: { file?: string } = {}): SavedModelGraph {
  const file = options.file ?? "<bytes>";
  const fail = (message: string, cause?: unknown): never => {
    throw new WeightsError(file, "", `Cannot read "${file}": ${message}`, cause ? { cause } : undefined);
  };
  let schemaVersion = 0;
  const metas: MetaGraph[] = [];
  try {
    const r = new ProtoReader(bytes);
    while (r.next()) {
      if (r.field === 1 && r.wireType === WireType.VARINT) schemaVersion = r.int64();
      else if (r.field === 2 && r.wireType === WireType.BYTES) metas.push(parseMetaGraph(r.message()));
      else r.skip();
    }
  } catch (e) {
    return fail(`malformed SavedModel protobuf: ${(e as Error).message}`, e);
  }
  if (metas.length === 0) fail("no meta graph (not a SavedModel, or an empty file)");
  const meta = metas.find((m) => m.nodes && m.tags.includes("serve")) ?? metas.find((m) => m.nodes);
  if (!meta?.nodes || meta.nodes.length === 0) {
    return fail("no object graph: only TensorFlow 2 SavedModels are supported");
  }
  const nodes = meta.nodes;
  const checkNode = (id: number, what: string) => {
    if (!Number.isInteger(id) || id < 0 || id >= nodes.length) {
      fail(`${what} refers to node ${id}, but the object graph has ${nodes.length} nodes`);
    }
  };

  // Breadth-first from the root: the first path found to each object names it.
  const paths = new Array<string[] | undefined>(nodes.length);
  const underOptimizer = new Array<boolean>(nodes.length).fill(false);
  const order: number[] = [0];
  paths[0] = [];
  for (let q = 0; q < order.length; q++) {
    const id = order[q];
    for (const child of nodes[id].children) {
      checkNode(child.nodeId, `a child of node ${id}`);
      if (paths[child.nodeId]) continue;
      paths[child.nodeId] = [...paths[id]!, escapeLocalName(child.localName)];
      underOptimizer[child.nodeId] = underOptimizer[id] || nodes[child.nodeId].slots.length > 0;
      order.push(child.nodeId);
    }
  }

  const slotOf = new Map<number, { name: string; ofNodeId: number; key: string }>();
  for (const id of order) {
    for (const slot of nodes[id].slots) {
      checkNode(slot.original, `a slot of node ${id}`);
      checkNode(slot.slotNode, `a slot of node ${id}`);
      const variablePath = paths[slot.original];
      if (!variablePath) continue;
      const key = `${variablePath.join("/")}/.OPTIMIZER_SLOT/${paths[id]!.join("/")}/` +
        `${escapeLocalName(slot.slotName)}${VARIABLE_VALUE_SUFFIX}`;
      slotOf.set(slot.slotNode, { name: slot.slotName, ofNodeId: slot.original, key });
    }
  }

  const variables: SavedModelVariable[] = [];
  const variableOf = (nodeId: number, key: string, kind: VariableKind, slot?: SavedModelVariable["slot"]) => {
    const v = nodes[nodeId].variable!;
    variables.push({
      nodeId,
      name: v.name,
      key,
      dtype: v.dtype,
      shape: v.shape,
      trainable: v.trainable,
      kind,
      ...(slot ? { slot } : {}),
    });
  };
  for (const id of order) {
    if (!nodes[id].variable || slotOf.has(id)) continue;
    const path = paths[id]!;
    variableOf(
      id,
      `${path.join("/")}${VARIABLE_VALUE_SUFFIX}`,
      classify(path, nodes[id].variable!.name, underOptimizer[id]),
    );
  }
  for (const [id, slot] of [...slotOf].sort((a, b) => a[0] - b[0])) {
    if (!nodes[id].variable) continue;
    variableOf(id, slot.key, "optimizer_slot", { name: slot.name, ofNodeId: slot.ofNodeId });
  }
  return {
    schemaVersion,
    tags: meta.tags,
    tensorflowVersion: meta.tensorflowVersion,
    nodes: nodes.length,
    variables,
  };
}
