// Images first, on the real one-node swarm, from Debian's docker-registry with htpasswd auth on
// loopback (docker login into a DOCKER_CONFIG the test makes): every image resolved to its digest
// before the cluster changes, the deploy pinned to it, a tag not pushed yet waited for, and registry
// trouble judged before anything moves.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { dockerCredentials } from "../agent/prepare/credentials.ts";
import { listJobs } from "../bin/jobs.ts";
import { commitStory, startFakeGithub, type FakeGithub } from "./helpers/github.ts";
import { publish, stackFile, startTestAgent, waitForRecord, type TestAgent } from "./helpers/agent.ts";
import { startTestApi } from "./helpers/api.ts";
import { WEB_REPO, buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { spawnDist } from "./helpers/proc.ts";
import { pushTo, startAuthRegistry, type TestRegistry } from "./helpers/registry.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";
import { docker, removeStack, waitFor } from "./helpers/swarm.ts";

const HISTORY = "history-token-0123456789abcdef0123456789";
const TOKEN = "github_pat_test_0123456789abcdefghijklmnopqrstuvwxyz";
const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();

describe("images first: resolved, pinned and waited for before the cluster changes", { timeout: 600_000 }, () => {
  let reg: TestRegistry;
  let s: TempSpool;
  const stack = `shimg-${process.pid}`;
  const shas = { v1: randomSha(), late: randomSha(), never: randomSha(), newer: randomSha(), moved: randomSha(), other: randomSha() };
  let gh: FakeGithub;
  const env = (extra: Record<string, string> = {}) => ({
    GITHUB_TOKEN: TOKEN,
    GITHUB_API_URL: gh.url,
    STACK_FILE: stackFile("registry-auth-web"),
    STACK_NAME: stack,
    STACK_ENV: "REGISTRY",
    REGISTRY: reg.addr,
    ...extra,
  });
  const service = `${stack}_web`;
  const inspect = (f: string) => docker(["service", "inspect", service, "-f", f]);
  const ref = (sha: string) => `${reg.addr}/acme/web:${sha}`;
  let agent: TestAgent | undefined;
  const restart = async (extra: Record<string, string>, dockerConfig = reg.dockerConfig) => {
    await agent?.stop();
    agent = await startTestAgent(s.root, env(extra), { DOCKER_CONFIG: dockerConfig });
  };

  before(async () => {
    await Promise.all(Object.values(shas).map((sha) => buildWebImage(sha)));
    reg = await startAuthRegistry("htpasswd");
    gh = await startFakeGithub({ token: TOKEN });
    s = await tempSpool();
  });
  after(async () => {
    await agent?.stop();
    await removeStack(stack);
    await reg?.remove();
    await gh?.close();
    await s?.cleanup();
  });

  it("deploys a pushed tag pinned to the digest resolved before the deploy; every task runs that digest", async () => {
    const digest = await pushTo(reg, `${WEB_REPO}:${shas.v1}`, "acme/web", shas.v1);
    // docker itself is given no credentials, so it cannot resolve the tag mid-deploy (it would deploy by
    // tag, warning): a pinned spec can only come from the watcher's resolution before the deploy
    agent = await startTestAgent(s.root, env({ IMAGE_WAIT_S: "60" }), { DOCKER_CONFIG: reg.emptyConfig }, undefined, {
      credentials: dockerCredentials({ DOCKER_CONFIG: reg.dockerConfig }),
    });
    const r = await waitForRecord(s.root, await publish(s.root, shas.v1, minutesAgo(10)));
    assert.equal(r.outcome, "success", r.reason);
    assert.equal(await inspect("{{.Spec.TaskTemplate.ContainerSpec.Image}}"), `${ref(shas.v1)}@${digest}`);
    assert.deepEqual(r.release?.images, [{ service: "web", image: `${ref(shas.v1)}@${digest}`, pinned: true }]);
    // resolved before the cluster changed: the service was created after the release's resolvedAt
    const created = Date.parse(await inspect("{{.CreatedAt}}"));
    assert.ok(r.release?.resolvedAt && Date.parse(r.release.resolvedAt) <= created, `${r.release?.resolvedAt} vs ${created}`);
    const tasks = (
      await docker(["service", "ps", service, "--filter", "desired-state=running", "--no-trunc", "--format", "{{.Image}}"])
    ).split("\n");
    assert.deepEqual(tasks, [`${ref(shas.v1)}@${digest}`]);
    // the history API (/api/deployments/<id>, behind HISTORY_TOKEN) gives the digest per service
    const api = await startTestApi(s.root, { HISTORY_TOKEN: HISTORY });
    try {
      const one = (await (
        await fetch(`${api.url}/api/deployments/${r.jobId}`, { headers: { authorization: `Bearer ${HISTORY}` } })
      ).json()) as { record: { release: { images: { service: string; image: string }[] } } };
      assert.equal(one.record.release.images[0]?.image, `${ref(shas.v1)}@${digest}`);
    } finally {
      await api.close();
    }
    assert.match(
      await agent!.metrics.registry.metrics(),
      new RegExp(`swarmhook_registry_requests_total\\{registry="${reg.addr}",outcome="200"\\} [1-9]`),
    );
  });

  it("waits for a tag not pushed yet (swarmhook jobs says so) and deploys it once it is pushed", async () => {
    const id = await publish(s.root, shas.late, minutesAgo(9));
    await waitFor(
      "the wait shown by swarmhook jobs",
      async () => ((await listJobs(s.root, 3)).includes(`waiting for images: ${ref(shas.late)}`) ? true : undefined),
      20_000,
      200,
    );
    const index = await inspect("{{.Version.Index}}");
    await new Promise((r) => setTimeout(r, 10_000));
    assert.equal(await inspect("{{.Version.Index}}"), index, "nothing changed while it waited");
    const digest = await pushTo(reg, `${WEB_REPO}:${shas.late}`, "acme/web", shas.late);
    const r = await waitForRecord(s.root, id, 60_000);
    assert.equal(r.outcome, "success", r.reason);
    assert.equal(await inspect("{{.Spec.TaskTemplate.ContainerSpec.Image}}"), `${ref(shas.late)}@${digest}`);
    assert.doesNotMatch(await listJobs(s.root, 3), /waiting for images/);
    assert.match(await agent!.metrics.registry.metrics(), /^swarmhook_image_wait_seconds_count 1$/m);
    // GitHub: the Deployment stayed queued while it waited, saying for what, then in_progress, success
    const story = await waitFor(
      "GitHub's statuses",
      async () => {
        const st = commitStory(gh, shas.late);
        return st.deployments[0]?.states.at(-1) === "success" ? st : undefined;
      },
      30_000,
      200,
    );
    assert.deepEqual(story.deployments[0]?.states, ["queued", "queued", "in_progress", "success"]);
    const waitingStatus = gh.requests.find(
      (q) => q.params.deployment_id === String(story.deployments[0]?.id) && String(q.body.description).startsWith("waiting for images"),
    );
    assert.equal(waitingStatus?.body.description, `waiting for images: ${ref(shas.late)}`);
    assert.deepEqual(gh.violations, []);
    assert.ok(agent!.logs.some((l) => l.level === 40 && /waiting for images not in the registry yet/.test(l.msg)));
  });

  it("a newer job supersedes a waiting one at once", async () => {
    const waiting = await publish(s.root, shas.never, minutesAgo(8));
    await waitFor("the wait", async () => ((await listJobs(s.root, 3)).includes("waiting for images") ? true : undefined), 20_000, 200);
    await pushTo(reg, `${WEB_REPO}:${shas.newer}`, "acme/web", shas.newer);
    const started = performance.now();
    const newer = await publish(s.root, shas.newer, minutesAgo(7));
    const r = await waitForRecord(s.root, waiting, 20_000);
    assert.equal(r.outcome, "superseded", r.reason);
    assert.equal(r.supersededBy, newer);
    assert.doesNotMatch(await listJobs(s.root, 3), /waiting for images/);
    assert.ok(performance.now() - started < 5_000, "at once, not at the end of the wait");
    assert.equal((await waitForRecord(s.root, newer, 60_000)).outcome, "success");
  });

  it("a watcher stopped during a wait stops at once and leaves the job in work/; a tag never pushed then fails after IMAGE_WAIT_S, naming the image, the service untouched", async () => {
    await restart({ IMAGE_WAIT_S: "600" });
    const index = await inspect("{{.Version.Index}}");
    const id = await publish(s.root, shas.never, minutesAgo(6));
    await waitFor("the wait", async () => ((await listJobs(s.root, 3)).includes("waiting for images") ? true : undefined), 20_000, 200);
    const stopping = performance.now();
    await agent?.stop();
    agent = undefined;
    assert.ok(performance.now() - stopping < 5_000, "the wait does not hold the stop");
    assert.deepEqual(await readdir(path.join(s.root, "work")), [`${id}.json`]);
    assert.doesNotMatch(await listJobs(s.root, 3), /waiting for images/);
    await restart({ IMAGE_WAIT_S: "5" });
    const r = await waitForRecord(s.root, id, 60_000);
    assert.equal(r.outcome, "failed");
    assert.match(r.reason ?? "", new RegExp(`image ${ref(shas.never)} not found in the registry after 5 s`));
    assert.equal(r.attempts.length, 0);
    assert.equal(await inspect("{{.Version.Index}}"), index);
  });

  it("without docker login: failed before the deploy, the 401 explained, no credential anywhere", async () => {
    await restart({ IMAGE_WAIT_S: "5" }, reg.emptyConfig);
    const index = await inspect("{{.Version.Index}}");
    const r = await waitForRecord(s.root, await publish(s.root, shas.newer, { committedAt: minutesAgo(5), redelivery: true }), 60_000);
    assert.equal(r.outcome, "failed");
    assert.match(r.reason ?? "", new RegExp(`run docker login ${reg.addr.replace(/\./g, "\\.")} on ${os.hostname()}`));
    assert.equal(await inspect("{{.Version.Index}}"), index);
    const everything = JSON.stringify(r) + JSON.stringify(agent!.logs);
    assert.doesNotMatch(everything, new RegExp(reg.password));
  });

  it("registry stopped: fail and auto (the default) fail before the deploy; warn deploys by tag and names the unpinned image", async () => {
    await pushTo(reg, `${WEB_REPO}:${shas.other}`, "acme/web", shas.other);
    await reg.stop();
    try {
      for (const policy of ["fail", "auto"]) {
        await restart({ IMAGE_WAIT_S: "5", ...(policy === "auto" ? {} : { DIGEST_POLICY: policy }) });
        const index = await inspect("{{.Version.Index}}");
        const failed = await waitForRecord(
          s.root,
          await publish(s.root, shas.other, { committedAt: minutesAgo(4), redelivery: true }),
          60_000,
        );
        assert.equal(failed.outcome, "failed");
        assert.match(
          failed.reason ?? "",
          new RegExp(`could not be resolved to a digest before the deploy: .*ECONNREFUSED.*DIGEST_POLICY=${policy}.*nothing was changed`),
        );
        assert.equal(failed.attempts.length, 0);
        assert.equal(await inspect("{{.Version.Index}}"), index);
      }
      await restart({ IMAGE_WAIT_S: "5", DIGEST_POLICY: "warn" });
      const r = await waitForRecord(s.root, await publish(s.root, shas.other, { committedAt: minutesAgo(3), redelivery: true }), 60_000);
      assert.equal(r.outcome, "success", r.reason);
      assert.equal(await inspect("{{.Spec.TaskTemplate.ContainerSpec.Image}}"), ref(shas.other));
      assert.ok(
        r.warnings.some((w) => w.includes(`image ${ref(shas.other)} not pinned`)),
        JSON.stringify(r.warnings),
      );
      assert.equal(r.release?.images[0]?.pinned, false);
    } finally {
      await reg.start();
    }
  });

  it("a re-pushed tag: plan shows both digests (exit 2) and a redeploy of the same commit moves to the new one", async () => {
    await restart({ IMAGE_WAIT_S: "5" });
    const first = await pushTo(reg, `${WEB_REPO}:${shas.moved}`, "acme/web", shas.moved);
    assert.equal((await waitForRecord(s.root, await publish(s.root, shas.moved, minutesAgo(2)), 60_000)).outcome, "success");
    // another build under the same tag
    await docker(["tag", `${WEB_REPO}:${shas.v1}`, `${WEB_REPO}:${shas.moved}-rebuilt`]);
    const second = await pushTo(reg, `${WEB_REPO}:${shas.moved}-rebuilt`, "acme/web", shas.moved);
    assert.notEqual(first, second);
    const p = spawnDist("bin/swarmhook.js", ["plan", "--stack", stack, "--sha", shas.moved], {
      SPOOL_DIR: s.root,
      ...env(),
      DOCKER_CONFIG: reg.dockerConfig,
      HOME: os.tmpdir(),
    });
    const code = await p.exited;
    assert.equal(code, 2, p.out() + p.err());
    assert.match(p.out(), new RegExp(`web: image ${ref(shas.moved)} ${first.slice(0, 19)} → ${second.slice(0, 19)}`));
    const r = await waitForRecord(s.root, await publish(s.root, shas.moved, { committedAt: minutesAgo(1), redelivery: true }), 60_000);
    assert.equal(r.outcome, "success", r.reason);
    assert.notEqual(r.reason, "no changes");
    assert.equal(await inspect("{{.Spec.TaskTemplate.ContainerSpec.Image}}"), `${ref(shas.moved)}@${second}`);
  });
});
