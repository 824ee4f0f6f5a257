// Rollback on the real one-node swarm: by hand (`swarmhook rollback`, the compiled CLI) to the digests
// a registry gave, and by policy (ON_FAILURE=rollback) after a deploy that serves the wrong commit.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { describe, it } from "node:test";
import { readDeployed, openSpool } from "../spool/index.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { REGISTRY_WEB_REPO, buildWebImage, pushImage } from "./helpers/images.ts";
import { publish, readRecords, stackFile, startTestAgent, waitForRecord } from "./helpers/agent.ts";
import { randomSha } from "./helpers/jobs.ts";
import { freePort } from "./helpers/postgres.ts";
import { spawnDist } from "./helpers/proc.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { docker, uniqueStack, waitFor } from "./helpers/swarm.ts";

const specImage = (stack: string) => docker(["service", "inspect", `${stack}_web`, "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);

async function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const p = spawnDist("bin/swarmhook.js", args, {});
  const code = await p.exited;
  return { code, out: p.out(), err: p.err() };
}

describe("rollback", () => {
  it("swarmhook rollback redeploys the last good release by the digests recorded then, even after its tag moved", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [a, b] = [randomSha(), randomSha()];
    const digestA = await pushImage(await buildWebImage(a, { repo: REGISTRY_WEB_REPO }));
    await pushImage(await buildWebImage(b, { repo: REGISTRY_WEB_REPO }));
    const agent = await startTestAgent(s.root, { STACK_FILE: stackFile("registry-web"), STACK_NAME: stack });
    onEnd(t, () => agent.stop());

    const first = await waitForRecord(s.root, await publish(s.root, a));
    assert.equal(first.outcome, "success", first.reason);
    assert.equal(first.trigger, "push");
    assert.deepEqual(first.release?.images, [{ service: "web", image: `${REGISTRY_WEB_REPO}:${a}@${digestA}`, pinned: true }]);
    assert.match(first.release?.stackFileHash ?? "", /^sha256:[0-9a-f]{64}$/);
    const second = await waitForRecord(s.root, await publish(s.root, b));
    assert.equal(second.outcome, "success", second.reason);

    // the tag of A now names another build: a rollback by tag would deploy that one
    const movedDigest = await pushImage(await buildWebImage(a, { repo: REGISTRY_WEB_REPO, label: "overwritten" }));
    assert.notEqual(movedDigest, digestA);

    const none = await cli(["rollback", "--spool", s.root, "--stack", stack, "--to", randomSha()]);
    assert.equal(none.code, 1, none.err);
    assert.match(none.err, /no successful deploy of [0-9a-f]{40} is recorded for stack .*nothing was queued/);
    assert.deepEqual(await readdir(`${s.root}/new`), []);

    const r = await cli(["rollback", "--spool", s.root, "--stack", stack]);
    assert.equal(r.code, 0, r.err);
    const jobId = /^queued (rollback-[0-9a-z-]+):/.exec(r.out)?.[1];
    assert.ok(jobId, r.out);
    assert.match(r.out, new RegExp(`back to ${a.slice(0, 12)} .* from ${b.slice(0, 12)}`));
    const back = await waitForRecord(s.root, jobId);
    assert.equal(back.outcome, "success", back.reason);
    assert.equal(back.trigger, "rollback");
    assert.equal(back.job?.kind, "rollback");
    assert.equal(back.job?.sha, a);
    assert.equal(await specImage(stack), `${REGISTRY_WEB_REPO}:${a}@${digestA}`);
    assert.equal((await readDeployed(openSpool(s.root), stack)).deployed?.sha, a);

    // --to a short SHA goes forward again, to B's recorded digest
    const fwd = await cli(["rollback", "--spool", s.root, "--stack", stack, "--to", b.slice(0, 9)]);
    assert.equal(fwd.code, 0, fwd.err);
    const again = await waitForRecord(s.root, /^queued (\S+):/.exec(fwd.out)?.[1] ?? "");
    assert.equal(again.outcome, "success", again.reason);
    assert.equal(await specImage(stack), second.release?.images[0]?.image);
  });

  it("ON_FAILURE=rollback: a deploy whose health URL keeps serving another commit fails, then the last good release is redeployed; both recorded", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [good, bad] = [randomSha(), randomSha()];
    await buildWebImage(good);
    await buildWebImage(bad, { reports: good }); // a build that serves the old commit
    const port = await freePort();
    const env = {
      STACK_FILE: stackFile("web-health"),
      STACK_NAME: stack,
      HEALTH_URL: `http://127.0.0.1:${port}/health`,
      HEALTH_TIMEOUT_S: "6",
    };
    const agent = await startTestAgent(s.root, env, { WEB_PORT: String(port) });
    onEnd(t, () => agent.stop());

    const ok = await waitForRecord(s.root, await publish(s.root, good));
    assert.equal(ok.outcome, "success", ok.reason);
    assert.deepEqual(ok.release?.images, [{ service: "web", image: `swarmhook-test/web:${good}`, pinned: false }]);

    const failedId = await publish(s.root, bad);
    const failed = await waitForRecord(s.root, failedId);
    assert.equal(failed.outcome, "failed");
    assert.match(
      failed.reason ?? "",
      new RegExp(`reports commit ${good.slice(0, 12)}, not ${bad.slice(0, 12)}.*rolling back to ${good.slice(0, 12)}`),
    );
    assert.match(failed.followedBy ?? "", /^rollback-/);
    const back = await waitForRecord(s.root, failed.followedBy ?? "");
    assert.equal(back.outcome, "success", back.reason);
    assert.equal(back.job?.kind === "rollback" && back.job.cause, "failed-deploy");
    assert.equal(back.job?.kind === "rollback" && back.job.failedJobId, failedId);
    assert.ok(
      back.warnings.some((w) => /no registry digest was recorded for web: deployed by the reference recorded/.test(w)),
      back.warnings.join("; "),
    );
    assert.equal(await specImage(stack), `swarmhook-test/web:${good}`);
    const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { commit: string };
    assert.equal(health.commit, good);
    const outcomes = (await readRecords(s.root)).map((r) => `${r.trigger}:${r.outcome}`);
    assert.deepEqual(outcomes, ["push:success", "push:failed", "rollback:success"]);
    // the rollback is not rolled back, and nothing more is queued
    await waitFor("an idle spool", async () => ((await readdir(`${s.root}/new`)).length === 0 ? true : undefined), 10_000);
  });

  it("ON_FAILURE=stay leaves the failed version and queues nothing", async (t) => {
    const s = await useTempSpool(t);
    const stack = uniqueStack(t);
    const [good, bad] = [randomSha(), randomSha()];
    await buildWebImage(good);
    await buildWebImage(bad, { reports: good });
    const port = await freePort();
    const agent = await startTestAgent(
      s.root,
      {
        STACK_FILE: stackFile("web-health"),
        STACK_NAME: stack,
        HEALTH_URL: `http://127.0.0.1:${port}/health`,
        HEALTH_TIMEOUT_S: "4",
        ON_FAILURE: "stay",
      },
      { WEB_PORT: String(port) },
    );
    onEnd(t, () => agent.stop());
    assert.equal((await waitForRecord(s.root, await publish(s.root, good))).outcome, "success");
    const failed = await waitForRecord(s.root, await publish(s.root, bad));
    assert.equal(failed.outcome, "failed");
    assert.equal(failed.followedBy, undefined);
    assert.equal(await specImage(stack), `swarmhook-test/web:${bad}`);
    assert.equal((await readRecords(s.root)).length, 2);
  });
});
