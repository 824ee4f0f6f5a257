// Plans for a stack file on this node (STACK_FILE/STACK_NAME), and DRY_RUN, on the real one-node swarm.
import assert from "node:assert/strict";
import os from "node:os";
import { describe, it } from "node:test";
import { publish, stackFile, startTestAgent, waitForRecord } from "./helpers/agent.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { spawnDist } from "./helpers/proc.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { docker, uniqueStack } from "./helpers/swarm.ts";

describe("plans for a stack file on this node", () => {
  it("plans an image change against what runs (exit 2), none for the running commit (exit 0); DRY_RUN records the plan and deploys nothing", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [a, b] = [randomSha(), randomSha()];
    await Promise.all([buildWebImage(a), buildWebImage(b)]);
    const env = { STACK_FILE: stackFile("web"), STACK_NAME: stack };
    const first = await startTestAgent(s.root, env);
    assert.equal((await waitForRecord(s.root, await publish(s.root, a))).outcome, "success");
    await first.stop();

    const plan = async (...args: string[]) => {
      const p = spawnDist("bin/swarmhook.js", ["plan", "--stack", stack, ...args], { SPOOL_DIR: s.root, ...env, HOME: os.tmpdir() });
      return { code: await p.exited, out: p.out(), err: p.err() };
    };
    const same = await plan();
    assert.equal(same.code, 0, same.out + same.err);
    assert.match(same.out, new RegExp(`plan for ${stack} at ${a.slice(0, 12)}:\\n  no changes`));
    const next = await plan("--sha", b);
    assert.equal(next.code, 2, next.out + next.err);
    assert.match(next.out, new RegExp(`web: image swarmhook-test/web:${a} → swarmhook-test/web:${b}`));
    assert.equal((await plan("--stack", "nope")).code, 1);

    const dry = await startTestAgent(s.root, { ...env, DRY_RUN: "1" });
    onEnd(t, () => dry.stop());
    const r = await waitForRecord(s.root, await publish(s.root, b));
    assert.equal(r.outcome, "planned");
    assert.equal(r.attempts.length, 0);
    assert.match(r.reason ?? "", /^DRY_RUN: web: image .* nothing deployed$/);
    assert.equal(r.plan?.changes[0]?.fields[0]?.field, "image");
    const running = await docker(["service", "inspect", `${stack}_web`, "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);
    assert.equal(running, `swarmhook-test/web:${a}`, "nothing was deployed");
  });
});
