import assert from "node:assert/strict";
import { WeightsError } from "../engine/errors.ts";
import {
  call,
  dict,
  float,
  global,
  newobj,
  op,
  persid,
  pickle,
  type Py,
  raw,
  tuple,
} from "../tests/_pickle_writer.ts";
import {
  isNamespaceObject,
  isTruncatedPickle,
  pickleAttributes,
  PickleGlobal,
  PickleObject,
  unpickle,
  type UnpickleOptions,
} from "./pickle.ts";
import { refusalReason } from "./pickle_globals.ts";

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g)!.map((b) => parseInt(b, 16)));
}

/** A value in a form deepEqual compares: Maps, Sets, bytes, tuples and bigints spelled out. */
function plain(value: unknown): unknown {
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Uint8Array) return { bytes: [...value] };
  if (value instanceof Map) return { map: [...value].map(([k, v]) => [plain(k), plain(v)]) };
  if (value instanceof Set) return { set: [...value].map(plain) };
  if (Array.isArray(value)) return Object.isFrozen(value) ? { tuple: value.map(plain) } : value.map(plain);
  if (value instanceof PickleGlobal) return { global: `${value}` };
  if (value instanceof PickleObject) {
    return { object: `${value.module}.${value.name}`, args: plain(value.args), state: plain(value.state) };
  }
  if (typeof value === "object" && value !== null) {
    return { fields: Object.entries(value).map(([k, v]) => [k, plain(v)]) };
  }
  return value;
}

function fails(bytes: Uint8Array, pattern: RegExp, options: UnpickleOptions = {}): WeightsError {
  let caught: unknown;
  try {
    unpickle(bytes, { file: "x.pth", part: "archive/data.pkl", ...options });
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof WeightsError, `expected a WeightsError, got ${caught}`);
  assert.equal(caught.file, "x.pth");
  assert.equal(caught.tensor, "");
  assert.match(caught.message, /^Cannot read "x\.pth": pickle "archive\/data\.pkl" at byte \d+: /);
  assert.match(caught.message, pattern);
  return caught;
}

// CPython 3.11's pickle.dumps(V, protocol=p) of
// V = {'a': [1, 2.5, 'x', None, True, False, (1, 2), (), (3,)], 'b': b'\x00\xff', 'big': 2**70, 'neg': -5,
//      'negbig': -2**40, 's': {7}, 'fs': frozenset([3]), 'ba': bytearray(b'hi'),
//      'od': collections.OrderedDict([('k', 1)]), 'u': 'h\u00e9\u4e16\\', 'f': -0.125}
const CPYTHON: Record<number, string> = {
  0: "286470300a56610a70310a286c70320a49310a6146322e350a6156780a70330a614e614930310a614930300a612849310a49320a7470340a612874612849330a7470350a617356620a70360a635f636f646563730a656e636f64650a70370a28565c7530303030ff0a70380a566c6174696e310a70390a747031300a527031310a73566269670a7031320a4c313138303539313632303731373431313330333432344c0a73566e65670a7031330a492d350a73566e65676269670a7031340a4c2d313039393531313632373737364c0a7356730a7031350a635f5f6275696c74696e5f5f0a7365740a7031360a28286c7031370a49370a61747031380a527031390a735666730a7032300a635f5f6275696c74696e5f5f0a66726f7a656e7365740a7032310a28286c7032320a49330a61747032330a527032340a735662610a7032350a635f5f6275696c74696e5f5f0a6279746561727261790a7032360a2867370a285668690a7032370a67390a747032380a527032390a747033300a527033310a73566f640a7033320a63636f6c6c656374696f6e730a4f726465726564446963740a7033330a2874527033340a566b0a7033350a49310a737356750a7033360a5668e95c75346531365c75303035630a7033370a7356660a7033380a462d302e3132350a732e",
  1: "7d71002858010000006171015d7102284b0147400400000000000058010000007871034e4930310a4930300a284b014b0274710429284b03747105655801000000627106635f636f646563730a656e636f64650a710728580300000000c3bf710858060000006c6174696e31710974710a52710b5803000000626967710c4c313138303539313632303731373431313330333432344c0a58030000006e6567710d4afbffffff58060000006e6567626967710e4c2d313039393531313632373737364c0a580100000073710f635f5f6275696c74696e5f5f0a7365740a7110285d71114b0761747112527113580200000066737114635f5f6275696c74696e5f5f0a66726f7a656e7365740a7115285d71164b0361747117527118580200000062617119635f5f6275696c74696e5f5f0a6279746561727261790a711a2868072858020000006869711b680974711c52711d74711e52711f58020000006f64712063636f6c6c656374696f6e730a4f726465726564446963740a71212952712258010000006b71234b01735801000000757124580700000068c3a9e4b8965c7125580100000066712647bfc0000000000000752e",
  2: "80027d71002858010000006171015d7102284b0147400400000000000058010000007871034e88894b014b02867104294b03857105655801000000627106635f636f646563730a656e636f64650a7107580300000000c3bf710858060000006c6174696e31710986710a52710b5803000000626967710c8a0900000000000000004058030000006e6567710d4afbffffff58060000006e6567626967710e8a060000000000ff580100000073710f635f5f6275696c74696e5f5f0a7365740a71105d71114b0761857112527113580200000066737114635f5f6275696c74696e5f5f0a66726f7a656e7365740a71155d71164b0361857117527118580200000062617119635f5f6275696c74696e5f5f0a6279746561727261790a711a680758020000006869711b680986711c52711d85711e52711f58020000006f64712063636f6c6c656374696f6e730a4f726465726564446963740a71212952712258010000006b71234b01735801000000757124580700000068c3a9e4b8965c7125580100000066712647bfc0000000000000752e",
  3: "80037d71002858010000006171015d7102284b0147400400000000000058010000007871034e88894b014b02867104294b03857105655801000000627106430200ff7107580300000062696771088a0900000000000000004058030000006e656771094afbffffff58060000006e6567626967710a8a060000000000ff580100000073710b636275696c74696e730a7365740a710c5d710d4b076185710e52710f580200000066737110636275696c74696e730a66726f7a656e7365740a71115d71124b0361857113527114580200000062617115636275696c74696e730a6279746561727261790a711643026869711785711852711958020000006f64711a63636f6c6c656374696f6e730a4f726465726564446963740a711b2952711c58010000006b711d4b0173580100000075711e580700000068c3a9e4b8965c711f580100000066712047bfc0000000000000752e",
  4: "800495e3000000000000007d94288c0161945d94284b014740040000000000008c0178944e88894b014b028694294b038594658c016294430200ff948c03626967948a090000000000000000408c036e6567944afbffffff8c066e6567626967948a060000000000ff8c0173948f94284b07908c02667394284b0391948c026261948c086275696c74696e73948c096279746561727261799493944302686994859452948c026f64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b944b01738c0175948c0768c3a9e4b8965c948c01669447bfc0000000000000752e",
  5: "800595cd000000000000007d94288c0161945d94284b014740040000000000008c0178944e88894b014b028694294b038594658c016294430200ff948c03626967948a090000000000000000408c036e6567944afbffffff8c066e6567626967948a060000000000ff8c0173948f94284b07908c02667394284b0391948c026261949602000000000000006869948c026f64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b944b01738c0175948c0768c3a9e4b8965c948c01669447bfc0000000000000752e",
};

const EXPECTED = plain(
  new Map<unknown, unknown>([
    ["a", [1, 2.5, "x", null, true, false, Object.freeze([1, 2]), Object.freeze([]), Object.freeze([3])]],
    ["b", Uint8Array.of(0, 255)],
    ["big", 2n ** 70n],
    ["neg", -5],
    ["negbig", -(2 ** 40)],
    ["s", new Set([7])],
    ["fs", new Set([3])],
    ["ba", Uint8Array.of(0x68, 0x69)],
    ["od", new Map([["k", 1]])],
    ["u", "h\u00e9\u4e16\\"],
    ["f", -0.125],
  ]),
);

for (const protocol of [0, 1, 2, 3, 4, 5]) {
  Deno.test(`unpickle() reads CPython's protocol ${protocol} pickle of Python data`, () => {
    const bytes = hex(CPYTHON[protocol]);
    const { value, end, protocol: seen } = unpickle(bytes, { file: "v.pkl" });
    assert.deepEqual(plain(value), EXPECTED);
    assert.equal(end, bytes.length);
    assert.equal(seen, protocol >= 2 ? protocol : 0);
  });
}

Deno.test("unpickle() builds argparse.Namespace as a plain object from protocols 0 and 2", () => {
  // pickle.dumps(argparse.Namespace(lr=0.5, arch='vit'), protocol=0 and 2)
  const p0 = hex(
    "63636f70795f7265670a5f7265636f6e7374727563746f720a70300a286361726770617273650a4e616d6573706163650a70310a635f5f6275696c74696e5f5f0a6f626a6563740a70320a4e7470330a5270340a286470350a566c720a70360a46302e350a7356617263680a70370a567669740a70380a73622e",
  );
  const p2 = hex(
    "80026361726770617273650a4e616d6573706163650a7100298171017d71022858020000006c727103473fe000000000000058040000006172636871045803000000766974710575622e",
  );
  for (const bytes of [p0, p2]) {
    const { value } = unpickle(bytes);
    assert.ok(isNamespaceObject(value));
    assert.equal(Object.getPrototypeOf(value), null);
    assert.deepEqual({ ...value }, { lr: 0.5, arch: "vit" });
  }
});

Deno.test("unpickle() turns NumPy scalars into numbers", () => {
  // pickle.dumps({'acc': np.float64(0.5), 'n': np.int64(-7), 'b': np.bool_(True), 'f': np.float32(1.5),
  //               'h': np.float16(-2.0)}, protocol=2) with NumPy 2.4
  const bytes = hex(
    "80027d71002858030000006163637101636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7102636e756d70790a64747970650a71035802000000663871048988877105527106284b0358010000003c71074e4e4e4affffffff4affffffff4b0074710862635f636f646563730a656e636f64650a71095809000000000000000000c3a03f710a58060000006c6174696e31710b86710c52710d86710e52710f58010000006e7110680268035802000000693871118988877112527113284b0368074e4e4e4affffffff4affffffff4b007471146268095810000000c3b9c3bfc3bfc3bfc3bfc3bfc3bfc3bf7115680b867116527117867118527119580100000062711a6802680358020000006231711b898887711c52711d284b0358010000007c711e4e4e4e4affffffff4affffffff4b0074711f6268095801000000017120680b8671215271228671235271245801000000667125680268035802000000663471268988877127527128284b0368074e4e4e4affffffff4affffffff4b0074712962680958050000000000c3803f712a680b86712b52712c86712d52712e580100000068712f680268035802000000663271308988877131527132284b0368074e4e4e4affffffff4affffffff4b00747133626809580300000000c3807134680b867135527136867137527138752e",
  );
  const { value } = unpickle(bytes);
  assert.deepEqual(
    plain(value),
    plain(new Map<string, unknown>([["acc", 0.5], ["n", -7], ["b", true], ["f", 1.5], ["h", -2]])),
  );
});

Deno.test("unpickle() keeps shared values shared through the memo", () => {
  const shared: Py = [1, 2];
  const bytes = pickle(dict({ x: shared, y: shared, z: tuple(shared, "s") }));
  const value = unpickle(bytes).value as Map<string, unknown>;
  assert.equal(value.get("x"), value.get("y"));
  assert.equal((value.get("z") as unknown[])[0], value.get("x"));
});

Deno.test("unpickle() makes inert placeholders for unknown classes, with their arguments and state", () => {
  const cls = global("timm.models.vision_transformer", "VisionTransformer");
  const bytes = pickle(dict({
    model: newobj(cls, [], dict({ depth: 12 })),
    sched: call(global("torch.optim.lr_scheduler", "CosineAnnealingLR"), [3, float(0.5)]),
    named: global("os", "system"),
  }));
  const value = unpickle(bytes).value as Map<string, unknown>;
  const model = value.get("model");
  assert.ok(model instanceof PickleObject);
  assert.equal(`${model.module}.${model.name}`, "timm.models.vision_transformer.VisionTransformer");
  assert.deepEqual(plain(model.state), plain(new Map([["depth", 12]])));
  const sched = value.get("sched") as PickleObject;
  assert.deepEqual([...sched.args], [3, 0.5]);
  // Naming a refused global without calling it is data.
  assert.deepEqual(plain(value.get("named")), { global: "os.system" });
});

Deno.test("unpickle() records BUILD state on an OrderedDict (a state dict's _metadata)", () => {
  const od = call(global("collections", "OrderedDict"), [], {
    items: [["w", 1]],
    state: dict({ _metadata: dict({ "": dict({ version: 1 }) }) }),
  });
  const value = unpickle(pickle(od)).value as Map<string, unknown>;
  assert.deepEqual(plain(value), plain(new Map([["w", 1]])));
  assert.ok(pickleAttributes(value) instanceof Map);
});

Deno.test("unpickle() passes persistent ids to persistentLoad and calls to construct", () => {
  const seen: unknown[] = [];
  const bytes = pickle(
    call(global("torch._utils", "_rebuild_tensor_v2"), [persid(tuple("storage", "0")), 0]),
  );
  const { value } = unpickle(bytes, {
    persistentLoad: (pid) => (seen.push(pid), "S"),
    construct: (g, args) => g.name === "_rebuild_tensor_v2" ? { tensor: args } : undefined,
  });
  assert.deepEqual(plain(seen), [{ tuple: ["storage", "0"] }]);
  assert.deepEqual((value as { tensor: unknown[] }).tensor, ["S", 0]);
  fails(bytes, /a persistent id, but this pickle takes none/);
});

Deno.test("unpickle() refuses to call os.system, builtins.eval and other system globals, running nothing", () => {
  const constructed: string[] = [];
  const construct = (g: PickleGlobal) => (constructed.push(`${g}`), undefined);
  const cases: [Uint8Array, RegExp][] = [
    [
      pickle(call(global("os", "system"), ["touch /tmp/pwned"])),
      /refused to call os\.system: module "os" runs/,
    ],
    [pickle(call(global("posix", "system"), ["id"])), /refused to call posix\.system/],
    [
      pickle(call(global("builtins", "eval"), ["1+1"])),
      /refused to call builtins\.eval: builtins\.eval is not a data type/,
    ],
    [op("c__builtin__\nexec\n(S'print(1)'\ntR."), /refused to call builtins\.exec/],
    [
      pickle(call(global("builtins", "getattr"), [global("os", "path"), "join"])),
      /refused to call builtins\.getattr/,
    ],
    [pickle(call(global("builtins", "__import__"), ["os"])), /refused to call builtins\.__import__/],
    [pickle(call(global("subprocess", "Popen"), [["ls"]])), /refused to call subprocess\.Popen/],
    [pickle(newobj(global("subprocess", "Popen"), [["ls"]])), /refused to call subprocess\.Popen/],
    [op("(S'id'\nios\nsystem\n."), /refused to call os\.system/], // INST
    [op("(cos\nsystem\nS'id'\no."), /refused to call os\.system/], // OBJ
    [op("\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R."), /refused to call os\.system/], // STACK_GLOBAL
    [
      pickle(
        call(global("copyreg", "_reconstructor"), [
          global("os", "system"),
          global("builtins", "object"),
          null,
        ]),
      ),
      /refused to call os\.system/,
    ],
    [
      pickle(call(global("importlib", "import_module"), ["os"])),
      /module "importlib" imports or runs Python code/,
    ],
    [pickle(call(global("os.path", "exists"), ["/"])), /module "os"/],
    [pickle(call(global("runpy", "run_path"), ["x.py"])), /refused to call runpy\.run_path/],
    [pickle(call(global("socket", "create_connection"), [tuple("a", 1)])), /reaches the network/],
    [pickle(call(global("pickle", "loads"), [Uint8Array.of(1)])), /refused to call pickle\.loads/],
    [pickle(call(global("torch", "__builtins__"), [])), /"__builtins__" reaches into Python's internals/],
  ];
  for (const [bytes, pattern] of cases) fails(bytes, pattern, { construct });
  // Only the harmless call the writer uses for bytes ever reached the hook.
  assert.deepEqual([...new Set(constructed)], ["_codecs.encode"]);
});

Deno.test("refusalReason() allows data types and placeholders and refuses the system", () => {
  assert.equal(refusalReason(new PickleGlobal("collections", "OrderedDict")), undefined);
  assert.equal(refusalReason(new PickleGlobal("builtins", "set")), undefined);
  assert.equal(refusalReason(new PickleGlobal("torch._utils", "_rebuild_tensor_v2")), undefined);
  assert.equal(refusalReason(new PickleGlobal("copyreg", "__newobj__")), undefined);
  assert.equal(refusalReason(new PickleGlobal("__main__", "Config")), undefined);
  assert.match(refusalReason(new PickleGlobal("builtins", "open"))!, /not a data type/);
  assert.match(refusalReason(new PickleGlobal("shutil", "rmtree"))!, /files/);
  assert.match(refusalReason(new PickleGlobal("webbrowser", "open"))!, /network/);
});

Deno.test("unpickle() refuses 100,000 nested lists, MARKs and a reference cycle", () => {
  const n = 100_000;
  const chain = new Uint8Array(2 * n + 2).fill(0x61);
  chain.set([0x80, 2]);
  chain.fill(0x5d, 2, n + 2);
  chain[chain.length - 1] = 0x2e;
  fails(chain, /containers nest deeper than the limit of 1000/);
  const marks = new Uint8Array(n + 3).fill(0x28);
  marks.set([0x80, 2]);
  marks[n + 2] = 0x2e;
  fails(marks, /MARKs nest deeper than the limit of 1000/);
  // Top-down through the memo: each new list goes into the previous one before anything is inside it.
  const u32 = (i: number) => [i & 0xff, (i >> 8) & 0xff, 0, 0];
  const parts = [0x80, 2, 0x5d, 0x72, ...u32(0)];
  for (let i = 1; i < 2000; i++) parts.push(0x6a, ...u32(i - 1), 0x5d, 0x72, ...u32(i), 0x61, 0x30);
  fails(op(...parts, 0x6a, ...u32(0), 0x2e), /containers nest deeper than the limit of 1000/);
  const cycle = op(0x80, 2, 0x5d, 0x71, 0, 0x68, 0, 0x61, 0x2e);
  fails(cycle, /reference cycle/);
  // Just under the limit is fine.
  const ok = op(0x80, 2, ...new Array(1000).fill(0x5d), ...new Array(999).fill(0x61), 0x2e);
  assert.ok(Array.isArray(unpickle(ok).value));
});

Deno.test("unpickle() refuses a huge or unknown memo index", () => {
  fails(
    op(0x80, 2, 0x4e, 0x72, 0xff, 0xff, 0xff, 0xff, 0x2e),
    /memo index 4294967295 is outside \[0, 33554432\)/,
  );
  fails(op(0x80, 2, 0x6a, 0x00, 0x00, 0x00, 0x7f, 0x2e), /memo index 2130706432 is outside/);
  fails(op(0x80, 2, 0x68, 5, 0x2e), /memo index 5 was never stored/);
  fails(op("N", "p-1\n", "."), /memo index -1 is outside/);
});

Deno.test("unpickle() refuses strings and bytes that claim more than the input holds", () => {
  const four = fails(
    op(0x80, 2, 0x58, 0xff, 0xff, 0xff, 0xff, "abc", 0x2e),
    /string of 4294967295 bytes is past the end of the input \(4 bytes left\)/,
  );
  assert.ok(isTruncatedPickle(four));
  fails(op(0x80, 4, 0x8d, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x2e), /string of \d+ bytes is past the end/);
  fails(op(0x80, 3, 0x42, 0, 0, 0, 0x10, 0x2e), /bytes of 268435456 bytes is past the end/);
  fails(op(0x80, 2, 0x54, 0xff, 0xff, 0xff, 0xff, 0x2e), /BINSTRING has a negative byte count -1/);
  fails(op(0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0xff, 0x2e), /LONG4 has a negative byte count/);
  fails(op(0x80, 4, 0x95, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x2e), /frame of 65535 bytes is past the end/);
});

Deno.test("unpickle() reports a truncated pickle at every cut", () => {
  const bytes = hex(CPYTHON[2]);
  for (let cut = 0; cut < bytes.length; cut++) {
    const e = fails(bytes.subarray(0, cut), /truncated|past the end/);
    assert.ok(isTruncatedPickle(e), `cut at ${cut}: ${e.message}`);
  }
  const p0 = hex(CPYTHON[0]);
  for (let cut = 0; cut < p0.length; cut += 7) assert.ok(isTruncatedPickle(fails(p0.subarray(0, cut), /./)));
});

Deno.test("unpickle() refuses unknown opcodes, extension codes and out-of-band buffers", () => {
  const e = fails(op(0x80, 2, 0x4e, 0xff, 0x2e), /at byte 3: unknown opcode 0xff/);
  assert.ok(!isTruncatedPickle(e));
  fails(op(0x80, 2, 0x82, 1, 0x2e), /extension codes/);
  fails(op(0x80, 5, 0x97, 0x2e), /out-of-band buffers/);
  fails(op(0x80, 6, 0x4e, 0x2e), /unsupported pickle protocol 6/);
});

Deno.test("unpickle() refuses stack and container misuse", () => {
  fails(op(0x80, 2, 0x2e), /stack underflow/);
  fails(op(0x80, 2, 0x74, 0x2e), /no MARK to pop to/);
  fails(op(0x80, 2, 0x29, 0x4e, 0x61, 0x2e), /cannot append to a tuple, expected a list/);
  fails(op(0x80, 2, 0x7d, 0x28, 0x4e, 0x75, 0x2e), /SETITEMS got 1 values/);
  fails(op(0x80, 2, 0x4b, 1, 0x4e, 0x62, 0x2e), /cannot BUILD an int/);
  fails(op(0x80, 2, 0x4b, 1, 0x29, 0x52, 0x2e), /cannot call an int: only globals are called/);
  fails(
    pickle(call(global("collections", "OrderedDict"), [[1, 2]])),
    /cannot build collections\.OrderedDict: .*pairs/,
  );
  fails(op("I12x\n."), /invalid int literal/);
  fails(op("S'abc\n."), /STRING argument is not quoted/);
});

Deno.test("unpickle() honours the object limit", () => {
  fails(pickle([1, 2, 3, 4, 5, 6]), /more than the limit of 5 values/, { limits: { maxObjects: 5 } });
});

Deno.test("unpickle() starts at an offset and reports where the pickle ended", () => {
  const a = pickle("first");
  const b = pickle(dict({ k: raw(0x4e) }));
  const both = new Uint8Array([...a, ...b]);
  const first = unpickle(both);
  assert.deepEqual([first.value, first.end], ["first", a.length]);
  const second = unpickle(both, { start: first.end });
  assert.deepEqual(plain(second.value), plain(new Map([["k", null]])));
  assert.equal(second.end, both.length);
});
