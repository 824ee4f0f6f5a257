import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { NODES, docker, netnsSwarm, nodeHost, waitFor } from "./helpers/swarm.ts";

const run = promisify(execFile);

describe("three-node swarm in network namespaces", () => {
  before(async () => {
    await netnsSwarm("up");
  });
  after(async () => {
    await netnsSwarm("down");
  });

  it("has three managers named after the reference cluster, kvm8 labelled edge", async () => {
    const host = nodeHost("kvm8");
    const lines = (await docker(["node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}"], { host })).split("\n").sort();
    assert.deepEqual(lines.map((l) => l.split(" ")[0]), [...NODES]);
    for (const l of lines) assert.match(l, / Ready (Leader|Reachable)$/);
    assert.equal(await docker(["node", "inspect", "kvm8", "-f", "{{index .Spec.Labels \"edge\"}}"], { host }), "true");
    await netnsSwarm("status"); // exits 0 only when all three are active
  });

  it("spreads a 3-replica service with max_replicas_per_node 1 over three nodes", async () => {
    const host = nodeHost("kvm2");
    await docker(
      ["service", "create", "--detach", "--name", "spread", "--replicas", "3", "--replicas-max-per-node", "1",
        "--endpoint-mode", "dnsrr", "--no-resolve-image", "swarmhook-test/busybox:latest", "sleep", "3600"],
      { host },
    );
    const nodes = await waitFor("three running tasks", async () => {
      const out = await docker(["service", "ps", "spread", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}"], { host });
      const running = out.split("\n").filter((l) => / Running /.test(l));
      return running.length === 3 ? running.map((l) => l.split(" ")[0]) : undefined;
    });
    assert.deepEqual([...new Set(nodes)].sort(), [...NODES]);
  });

  it("comes down cleanly and can be taken down twice", async () => {
    await netnsSwarm("down");
    await netnsSwarm("down");
    const { stdout } = await run("ip", ["netns", "list"]);
    assert.doesNotMatch(stdout, /swarmhook-/);
    await assert.rejects(run("ip", ["link", "show", "swarmhook0"]));
    await assert.rejects(netnsSwarm("status"));
  });
});
