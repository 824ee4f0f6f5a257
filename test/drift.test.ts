// Drift on the real one-node swarm: what runs, planned against the release the watcher last recorded
// as successful (images pinned by digest through the local registry). Just deployed: in sync, pass after
// pass. Changed by hand: each change named. Undone: in sync again.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadAgentConfig } from "../agent/config.ts";
import { createDockerRunner } from "../agent/docker.ts";
import { detectDrift } from "../agent/verify/index.ts";
import { openSpool, readDeployed } from "../spool/index.ts";
import { publish, stackFile, startTestAgent, waitForRecord } from "./helpers/agent.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { REGISTRY_WEB_REPO, buildWebImage, pushImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { createByHand, docker, removeStack, uniqueStack } from "./helpers/swarm.ts";

describe("drift: what runs against the last good release", () => {
  it("in sync right after a deploy (ten passes); an image, a scale and a hand-made service are drift; undone, in sync again", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [a, b] = [randomSha(), randomSha()];
    const digestA = await pushImage(await buildWebImage(a, { repo: REGISTRY_WEB_REPO }));
    await pushImage(await buildWebImage(b, { repo: REGISTRY_WEB_REPO }));
    const env = { STACK_FILE: stackFile("registry-web"), STACK_NAME: stack };
    const agent = await startTestAgent(s.root, env);
    onEnd(t, () => agent.stop());
    assert.equal((await waitForRecord(s.root, await publish(s.root, a))).outcome, "success");
    const config = loadAgentConfig({ SPOOL_DIR: s.root, ...env });
    const sc = config.stacks[0] as (typeof config.stacks)[number];
    const { deployed } = await readDeployed(openSpool(s.root), stack);
    assert.ok(deployed?.release, "the watcher recorded the release");
    assert.equal(deployed.release.images[0]?.image, `${REGISTRY_WEB_REPO}:${a}@${digestA}`);
    const runner = createDockerRunner();
    const drift = async () => (await detectDrift(runner, sc, sc.file, deployed)).plan;

    for (let pass = 0; pass < 10; pass++) assert.equal((await drift()).summary, "no changes", `pass ${pass + 1}`);

    const svc = `${stack}_web`;
    await docker(["service", "update", "--detach", "--image", `${REGISTRY_WEB_REPO}:${b}`, svc]);
    const moved = await drift();
    assert.deepEqual(
      moved.changes.map((c) => [c.service, c.change, c.fields.map((f) => f.field)]),
      [["web", "update", ["image"]]],
    );
    assert.match(
      moved.summary,
      new RegExp(`web: image ${REGISTRY_WEB_REPO}:${b}@sha256:[0-9a-f]{64} → ${REGISTRY_WEB_REPO}:${a}@${digestA}`),
    );

    await docker(["service", "update", "--detach", "--image", `${REGISTRY_WEB_REPO}:${a}@${digestA}`, svc]);
    assert.equal((await drift()).summary, "no changes", "the image put back by hand");

    await docker(["service", "scale", "--detach", `${svc}=2`]);
    assert.match((await drift()).summary, /^web: replicas 2 → 1$/);
    await docker(["service", "scale", "--detach", `${svc}=1`]);

    const extra = `${stack}_extra`;
    await createByHand(stack, extra);
    onEnd(t, () => removeStack(stack));
    const added = await drift();
    assert.deepEqual(
      added.changes.map((c) => [c.service, c.change]),
      [["extra", "remove"]],
    );
    await docker(["service", "rm", extra]);
    assert.equal((await drift()).summary, "no changes");
  });
});
