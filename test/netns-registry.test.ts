// The three-node netns swarm pulling from an authenticated registry (Debian's docker-registry with
// htpasswd auth on the netns bridge, which every node's dockerd treats as insecure, as Docker does for
// a registry on its own LAN): the watcher on kvm8 resolves the tag to its digest, deploys pinned with
// --with-registry-auth, and kvm2 and kvm4, which never had the image, pull that digest themselves.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { readFile } from "node:fs/promises";
import { publish, readRecords, stackFile, startTestAgent, waitForRecord, type TestAgent } from "./helpers/agent.ts";
import { WEB_REPO, buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { pushTo, startAuthRegistry, type TestRegistry } from "./helpers/registry.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";
import { docker, loadIntoNodes, netnsSwarm, nodeHost, removeStack, waitFor } from "./helpers/swarm.ts";

const KVM8 = nodeHost("kvm8");
const BRIDGE = "198.18.13.1"; // scripts/netns-swarm.sh's bridge, the nodes' way to the host

describe("the three-node swarm pulls a pinned digest from an authenticated registry", { timeout: 10 * 60_000 }, () => {
  let reg: TestRegistry;
  let s: TempSpool;
  let agent: TestAgent | undefined;
  const stack = `shnreg${process.pid}`;
  const sha = randomSha();

  before(async () => {
    await buildWebImage(sha);
    await netnsSwarm("up");
    // only kvm8 holds the image (to push it): kvm2 and kvm4 must pull
    await loadIntoNodes(`${WEB_REPO}:${sha}`, ["kvm8"]);
    reg = await startAuthRegistry("htpasswd", { host: BRIDGE, dockerHost: KVM8 });
    s = await tempSpool();
  });
  after(async () => {
    await agent?.stop();
    await removeStack(stack, KVM8);
    await reg?.remove();
    await s?.cleanup();
    await netnsSwarm("down");
  });

  it("every node runs the digest resolved before the deploy", async () => {
    const digest = await pushTo(reg, `${WEB_REPO}:${sha}`, "acme/web", sha, KVM8);
    const ref = `${reg.addr}/acme/web:${sha}`;
    for (const node of ["kvm2", "kvm4"] as const)
      await assert.rejects(docker(["image", "inspect", ref], { host: nodeHost(node) }), `${node} does not hold the image yet`);
    agent = await startTestAgent(
      s.root,
      { STACK_FILE: stackFile("netns-registry-web"), STACK_NAME: stack, STACK_ENV: "REGISTRY", REGISTRY: reg.addr, IMAGE_WAIT_S: "0" },
      { DOCKER_HOST: KVM8, DOCKER_CONFIG: reg.dockerConfig },
    );
    const r = await waitForRecord(s.root, await publish(s.root, sha), 240_000);
    assert.equal(r.outcome, "success", r.reason);
    assert.deepEqual(r.release?.images, [{ service: "web", image: `${ref}@${digest}`, pinned: true }]);
    const tasks = (
      await docker(
        ["service", "ps", `${stack}_web`, "--filter", "desired-state=running", "--no-trunc", "--format", "{{.Node}} {{.Image}}"],
        {
          host: KVM8,
        },
      )
    )
      .split("\n")
      .sort();
    assert.deepEqual(tasks, [`kvm2 ${ref}@${digest}`, `kvm4 ${ref}@${digest}`, `kvm8 ${ref}@${digest}`]);
    for (const node of ["kvm2", "kvm4"] as const) {
      const held = await docker(["image", "inspect", "-f", "{{json .RepoDigests}}", `${ref}@${digest}`], { host: nodeHost(node) });
      assert.ok(held.includes(digest), `${node} pulled ${digest}: ${held}`);
    }
  });
  it("a node down under a replicated service: degraded after three passes (warn, gauge), never healed, no drift", async () => {
    await agent?.stop();
    agent = await startTestAgent(
      s.root,
      {
        STACK_FILE: stackFile("netns-registry-web"),
        STACK_NAME: stack,
        STACK_ENV: "REGISTRY",
        REGISTRY: reg.addr,
        IMAGE_WAIT_S: "0",
        RECONCILE_INTERVAL_S: "5",
        SELF_HEAL: "1",
      },
      { DOCKER_HOST: KVM8, DOCKER_CONFIG: reg.dockerConfig },
    );
    const a = agent;
    const gauge = async (m: typeof a.metrics.degraded) => (await m.get()).values.find((v) => v.labels.stack === stack)?.value;
    // in sync before the fault (three tasks, one per node)
    const inSync = async () => (await a.metrics.reconcilePasses.get()).values.some((v) => v.labels.outcome === "in_sync" && v.value > 0);
    await waitFor("a pass that found the stack in sync", async () => ((await inSync()) ? true : undefined), 60_000, 500);
    const pid = Number((await readFile("/run/swarmhook-netns/kvm2/docker.pid", "utf8")).trim());
    process.kill(pid, "SIGTERM"); // kvm2's engine stops: its replica cannot go anywhere (max_replicas_per_node 1)
    const said = await waitFor(
      "the degraded warning",
      async () => a.logs.find((l) => l.msg.startsWith("degraded: web 2/3 running")),
      240_000,
      500,
    );
    assert.equal(said.level, 40);
    assert.equal(await gauge(a.metrics.degraded), 1);
    await new Promise((r) => setTimeout(r, 12_000)); // two more passes
    assert.equal(a.logs.filter((l) => l.msg.startsWith("degraded:")).length, 1, "told once");
    assert.equal(await gauge(a.metrics.drift), 0, "a node down is no drift");
    const records = await readRecords(s.root);
    assert.deepEqual(
      records.filter((r) => r.trigger === "heal"),
      [],
      "nothing healed: Swarm reschedules",
    );
  });
});
