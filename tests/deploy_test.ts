/**
 * `deploy/`, checked as far as this machine allows (no cluster, no container runtime, no network):
 * - every Kubernetes manifest validates against the Kubernetes API's JSON schema, through the validators
 *   that the npm package kubernetes-models generates from the Kubernetes OpenAPI definitions (types,
 *   enums such as completionMode, required fields), and has no field the API does not define (the schema
 *   allows unknown fields, so the manifests are also type-checked, as object literals, against the
 *   package's TypeScript interfaces: `deno check` rejects an excess property);
 * - the Indexed Job shards with `--shard $(JOB_COMPLETION_INDEX)/N` for N = its completions, uses only
 *   flags `embed` has, and the merge Job reads exactly the N files the pods write, on the same claim;
 * - the Dockerfile copies what exists and pins the Deno that CI uses; the scripts parse.
 * Running the shards, killing one and merging is tests/shard_merge_test.ts (through the Slurm scripts).
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { Job } from "kubernetes-models/batch/v1/Job";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { embedCli, ROOT } from "./_embed_cli.ts";
import { withTempDir } from "./_temp.ts";

const K8S = ["embed-job.yaml", "merge-job.yaml", "pvc.yaml"];

// deno-lint-ignore no-explicit-any
type Manifest = Record<string, any>;

async function manifests(): Promise<Map<string, Manifest>> {
  const out = new Map<string, Manifest>();
  for (const name of K8S) {
    const docs = parseAllDocuments(await Deno.readTextFile(`${ROOT}deploy/k8s/${name}`));
    assert.equal(Array.isArray(docs) ? docs.length : 1, 1, `${name}: one document`);
    const doc = Array.isArray(docs) ? docs[0] : docs;
    assert.deepEqual(doc.errors, [], `${name}: YAML errors`);
    out.set(name, doc.toJS());
  }
  return out;
}

Deno.test("deploy/k8s manifests validate against the Kubernetes JSON schema", async () => {
  for (const [name, m] of await manifests()) {
    if (m.kind === "Job") new Job(m as ConstructorParameters<typeof Job>[0]).validate();
    else if (m.kind === "PersistentVolumeClaim") {
      new PersistentVolumeClaim(m as ConstructorParameters<typeof PersistentVolumeClaim>[0]).validate();
    } else assert.fail(`${name}: unexpected kind ${m.kind}`);
  }
  // The validators do reject what the API would.
  const job = (await manifests()).get("embed-job.yaml")!;
  const broken = structuredClone(job);
  broken.spec.completionMode = "indexed";
  assert.throws(() => new Job(broken as ConstructorParameters<typeof Job>[0]).validate(), /completionMode/);
});

Deno.test("deploy/k8s manifests have no field the Kubernetes API lacks (type-checked as object literals)", async () => {
  const all = await manifests();
  await withTempDir(async (dir) => {
    const check = async (objects: Manifest[]) => {
      const source = [
        `import type { IJob } from "kubernetes-models/batch/v1/Job";`,
        `import type { IPersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";`,
        ...objects.map((m, i) =>
          `export const m${i}: ${m.kind === "Job" ? "IJob" : "IPersistentVolumeClaim"} = ${
            JSON.stringify(m)
          };`
        ),
      ].join("\n");
      await Deno.writeTextFile(`${dir}/manifests.ts`, source);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["check", "--config", `${ROOT}deno.dev.json`, `${dir}/manifests.ts`],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
    };
    const ok = await check([...all.values()]);
    assert.equal(ok.code, 0, ok.stderr);
    const typo = structuredClone(all.get("embed-job.yaml")!);
    typo.spec.template.spec.containers[0].volumeMount = typo.spec.template.spec.containers[0].volumeMounts;
    const bad = await check([typo]);
    assert.notEqual(bad.code, 0, "a misspelt field passed the type check");
    assert.match(bad.stderr, /volumeMount/);
  });
});

Deno.test("deploy/k8s: the Indexed Job shards by $(JOB_COMPLETION_INDEX) and the merge Job reads its N files", async () => {
  const all = await manifests();
  const job = all.get("embed-job.yaml")!;
  const merge = all.get("merge-job.yaml")!;
  const pvc = all.get("pvc.yaml")!;
  const n = job.spec.completions;
  assert.equal(job.spec.completionMode, "Indexed");
  assert.ok(Number.isInteger(n) && n > 1);
  const container = job.spec.template.spec.containers[0];
  const args: string[] = container.args;
  const after = (flag: string) => args[args.indexOf(flag) + 1];
  assert.equal(after("--shard"), `$(JOB_COMPLETION_INDEX)/${n}`);
  const out = after("--out");
  assert.match(out, /\$\(JOB_COMPLETION_INDEX\)/);
  // Every flag is one embed has (the wrapper adds --resume).
  const help = (await embedCli(["--help"])).stdout;
  for (const flag of args.filter((a) => a.startsWith("--"))) {
    assert.match(help, new RegExp(`^\\s+${flag}\\b`, "m"), flag);
  }
  assert.equal(container.command[0], "/opt/derm-webgpu/deploy/embed-shard.sh");
  // The merge reads each index's file, on the same claim and mount.
  const shards = Array.from({ length: n }, (_, i) => out.replaceAll("$(JOB_COMPLETION_INDEX)", String(i)));
  const margs: string[] = merge.spec.template.spec.containers[0].args;
  assert.deepEqual(margs.slice(margs.indexOf("--out") + 2), shards);
  for (const m of [job, merge]) {
    const spec = m.spec.template.spec;
    assert.equal(spec.volumes[0].persistentVolumeClaim.claimName, pvc.metadata.name);
    const mount = spec.containers[0].volumeMounts[0];
    assert.equal(mount.name, spec.volumes[0].name);
    for (const path of [...shards, margs[margs.indexOf("--out") + 1]]) {
      assert.ok(path.startsWith(mount.mountPath + "/"));
    }
  }
  assert.ok(pvc.spec.accessModes.includes("ReadWriteMany"));
});

Deno.test("deploy: the Dockerfile copies what exists and pins CI's Deno; the scripts parse", async () => {
  const dockerfile = await Deno.readTextFile(`${ROOT}deploy/Dockerfile`);
  const ci = await Deno.readTextFile(`${ROOT}.ci/run`);
  const version = /deno@(\d+\.\d+\.\d+)/.exec(ci)![1];
  assert.match(dockerfile, new RegExp(`denoland/deno:bin-${version.replaceAll(".", "\\.")}\\b`));
  assert.match(dockerfile, /WORKDIR \/opt\/derm-webgpu/);
  for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const source of m[1].split(/\s+/)) await Deno.stat(`${ROOT}${source}`);
  }
  assert.match(dockerfile, /COPY deploy\/embed-shard\.sh \.\/deploy\/embed-shard\.sh/);
  assert.match(dockerfile, /mesa-vulkan-drivers/);
  assert.match(dockerfile, /NVIDIA_DRIVER_CAPABILITIES=[^\n]*graphics/);
  for (const script of ["embed-shard.sh", "slurm/embed-array.sh", "slurm/merge.sh", "slurm/submit.sh"]) {
    const out = await new Deno.Command("bash", { args: ["-n", `${ROOT}deploy/${script}`] }).output();
    assert.equal(out.code, 0, `${script}: ${new TextDecoder().decode(out.stderr)}`);
    assert.ok(
      ((await Deno.stat(`${ROOT}deploy/${script}`)).mode! & 0o111) !== 0,
      `${script} is not executable`,
    );
  }
});
