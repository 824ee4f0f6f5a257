// Deploy feedback: GitHub Deployments and commit statuses (a loopback GitHub that checks every request
// against GitHub's OpenAPI description) and chat messages, through the outbox, with real swarm deploys.
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync } from "node:crypto";
import { readdir } from "node:fs/promises";
import { describe, it } from "node:test";
import { loadAgentConfig } from "../agent/config.ts";
import { retryDelay } from "../agent/report/outbox-sender.ts";
import { renderNotification } from "../agent/report/notify.ts";
import { createNotifyPolicy } from "../agent/report/report-policy.ts";
import { listJobs } from "../bin/jobs.ts";
import { publish, readRecords, stackFile, startTestAgent, waitForRecord } from "./helpers/agent.ts";
import { receiver, type Received } from "./helpers/chat.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { commitStory, startFakeGithub, type FakeGithub } from "./helpers/github.ts";
import { makeRecord } from "./helpers/history.ts";
import { buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { uniqueStack, waitFor } from "./helpers/swarm.ts";

const TOKEN = "github_pat_test_0123456789abcdefghijklmnopqrstuvwxyz";
const REPO = "acme/shop";
// the watcher's outbox is in its STATE_DIR (startTestAgent: `<spool>.state`), never on the spool
const outbox = async (root: string) => (await readdir(`${root}.state/outbox`).catch(() => [])).filter((n) => n.endsWith(".json"));

async function githubAgent(
  t: Parameters<typeof onEnd>[0],
  root: string,
  gh: FakeGithub,
  stack: string,
  extra: Record<string, string> = {},
) {
  const agent = await startTestAgent(root, {
    STACK_FILE: stackFile("web"),
    STACK_NAME: stack,
    GITHUB_TOKEN: TOKEN,
    GITHUB_API_URL: gh.url,
    DEPLOY_ENVIRONMENT: "production",
    ENVIRONMENT_URL: "https://shop.example.com",
    LOG_URL_TEMPLATE: "https://shop.example.com/deployments/{id}",
    ...extra,
  });
  onEnd(t, () => agent.stop());
  return agent;
}

/** A temp spool, a loopback GitHub taking TOKEN, a stack name and a commit whose image is built. */
async function githubCase(t: Parameters<typeof onEnd>[0]) {
  const s = await useTempSpool(t);
  const gh = await startFakeGithub({ token: TOKEN });
  onEnd(t, () => gh.close());
  const sha = randomSha();
  await buildWebImage(sha);
  return { s, gh, stack: uniqueStack(t), sha };
}

/** Wait until GitHub holds the final commit status for `sha` and the outbox is empty. */
async function delivered(root: string, gh: FakeGithub, sha: string, timeoutMs = 120_000): Promise<ReturnType<typeof commitStory>> {
  return waitFor(
    `GitHub's statuses for ${sha.slice(0, 12)}`,
    async () => {
      const story = commitStory(gh, sha);
      return story.commit.length >= 2 && (await outbox(root)).length === 0 ? story : undefined;
    },
    timeoutMs,
    250,
  );
}

describe("GitHub reports from real deploys", () => {
  it("a good commit: one Deployment for its SHA, queued → in_progress → success, and a success commit status; a crashing image: failure with the reason", async (t) => {
    const s = await useTempSpool(t);
    const gh = await startFakeGithub({ token: TOKEN });
    onEnd(t, () => gh.close());
    const stack = uniqueStack(t);
    const [good, broken] = [randomSha(), randomSha()];
    await Promise.all([buildWebImage(good), buildWebImage(broken, { crash: true })]);
    const agent = await githubAgent(t, s.root, gh, stack);

    const jobId = await publish(s.root, good, { repository: REPO });
    assert.equal((await waitForRecord(s.root, jobId)).outcome, "success");
    const ok = await delivered(s.root, gh, good);
    assert.equal(ok.deployments.length, 1);
    const [d] = ok.deployments;
    assert.deepEqual(d?.states, ["queued", "in_progress", "success"]);
    assert.deepEqual(ok.commit, ["pending", "success"]);
    assert.equal(d?.body.environment, "production");
    assert.equal(d?.body.auto_merge, false);
    assert.deepEqual(d?.body.required_contexts, []);
    const final = gh.requests.find((r) => r.params.deployment_id === String(d?.id) && r.body.state === "success");
    assert.equal(final?.body.environment_url, "https://shop.example.com");
    assert.equal(final?.body.log_url, `https://shop.example.com/deployments/${jobId}`);
    const commitStatus = gh.requests.find((r) => r.template.endsWith("/statuses/{sha}") && r.body.state === "success");
    assert.equal(commitStatus?.body.context, `swarmhook/${stack}`);
    assert.ok(gh.requests.every((r) => r.authorization === `token ${TOKEN}`));

    // a late push the branch has moved past: its Deployment ends inactive (it never ran), not failed
    const [next, late] = [randomSha(), randomSha()];
    await buildWebImage(next);
    // the branch moved late → next (GitHub's push chain says so); late's own push arrives after
    assert.equal((await waitForRecord(s.root, await publish(s.root, next, { repository: REPO, before: late }))).outcome, "success");
    await delivered(s.root, gh, next);
    const lateId = await publish(s.root, late, { repository: REPO, before: good });
    assert.equal((await waitForRecord(s.root, lateId)).outcome, "stale");
    const gone = await waitFor(
      "the stale push's Deployment to end",
      async () => {
        const story = commitStory(gh, late);
        return story.deployments[0]?.states.at(-1) === "inactive" && (await outbox(s.root)).length === 0 ? story : undefined;
      },
      60_000,
      250,
    );
    assert.deepEqual(gone.deployments[0]?.states, ["queued", "inactive"]);

    const badId = await publish(s.root, broken, { repository: REPO });
    const rec = await waitForRecord(s.root, badId);
    assert.equal(rec.outcome, "rolled_back");
    const bad = await delivered(s.root, gh, broken);
    assert.deepEqual(bad.deployments[0]?.states, ["queued", "in_progress", "failure"]);
    assert.deepEqual(bad.commit, ["pending", "failure"]);
    const why = gh.requests.find((r) => r.params.deployment_id === String(bad.deployments[0]?.id) && r.body.state === "failure");
    assert.match(String(why?.body.description), /^rolled back: .*rollback/);
    assert.ok(String(why?.body.description).length <= 140);
    assert.deepEqual(gh.violations, []);
    const logged = JSON.stringify(agent.logs);
    assert.ok(logged.includes("job rolled_back") && !logged.includes(TOKEN), "the token never reaches the log");
    const records = JSON.stringify(await readRecords(s.root));
    assert.ok(!records.includes(TOKEN), "nor a record");
  });

  it("GitHub answering 502 for 30 s, then a rate limit with x-ratelimit-reset: the deploy is recorded on time, every status arrives after, in order", async (t) => {
    const { s, gh, stack, sha } = await githubCase(t);
    gh.failFor(30_000, 502);
    gh.rateLimitNext(3);
    const started = Date.now();
    await githubAgent(t, s.root, gh, stack);
    const rec = await waitForRecord(s.root, await publish(s.root, sha, { repository: REPO }));
    assert.equal(rec.outcome, "success", rec.reason);
    const recordedAfter = Date.parse(rec.timings.finished) - started;
    assert.ok(recordedAfter < 30_000, `the deploy waited for GitHub: recorded after ${recordedAfter} ms`);
    assert.match(await listJobs(s.root, 5, s.stateDir), /outbox: \d+ reports? undelivered/);
    const story = await delivered(s.root, gh, sha, 180_000);
    assert.equal(story.deployments.length, 1, "one Deployment, however often its creation was retried");
    assert.deepEqual(story.deployments[0]?.states, ["queued", "in_progress", "success"]);
    assert.deepEqual(story.commit, ["pending", "success"]);
    // what the watcher did about the faults (not what the fake did): kept retrying through the
    // outage, came back soon after it, and waited out the rate limit until x-ratelimit-reset
    const failed = gh.requests.filter((r) => r.status === 502);
    assert.ok(failed.length >= 3, `${failed.length} tries during a 30 s outage`);
    const gaps = gh.requests.slice(1).map((r, i) => r.at - (gh.requests[i]?.at ?? 0));
    assert.ok(Math.max(...gaps) <= 60_000, `at most a minute between tries: ${gaps.join(", ")} ms`);
    const firstOk = gh.requests.find((r) => r.status >= 200 && r.status < 300);
    assert.ok((firstOk?.at ?? Infinity) - started < 30_000 + 60_000, "back within a minute of GitHub's return");
    const limited = gh.requests.findIndex((r) => r.status === 403);
    assert.ok(limited >= 0, "the rate limit was met");
    const afterLimit = gh.requests[limited + 1];
    assert.ok(
      afterLimit && afterLimit.at - (gh.requests[limited]?.at ?? 0) >= 2000,
      `the next request waited for x-ratelimit-reset (3 s): ${afterLimit ? afterLimit.at - (gh.requests[limited]?.at ?? 0) : "none"} ms`,
    );
    assert.deepEqual(gh.violations, []);
  });

  it("OUTBOX_MAX bounds what waits for a GitHub that is down: the oldest reports go first, each logged", async (t) => {
    const { s, gh, stack, sha } = await githubCase(t);
    gh.failFor(3600_000, 503);
    const more = [randomSha(), randomSha()];
    await Promise.all(more.map((x) => buildWebImage(x)));
    const agent = await githubAgent(t, s.root, gh, stack, { OUTBOX_MAX: "10" });
    let before: string | undefined;
    for (const c of [sha, ...more]) {
      assert.equal(
        (await waitForRecord(s.root, await publish(s.root, c, { repository: REPO, ...(before ? { before } : {}) }))).outcome,
        "success",
      );
      before = c;
    }
    const left = await waitFor(
      "the last deploy's reports written",
      async () => {
        const names = (await outbox(s.root)).sort();
        return agent.logs.filter((l) => l.msg === "outbox full: dropped its oldest report").length >= 2 ? names : undefined;
      },
      20_000,
    );
    assert.ok(left.length <= 10, `${left.length} reports wait (OUTBOX_MAX 10)`);
    const dropped = agent.logs.filter((l) => l.msg === "outbox full: dropped its oldest report").map((l) => String(l.report));
    for (const name of dropped)
      assert.ok(
        left.every((kept) => kept > name),
        `${name} was older than every report kept`,
      );
    assert.ok(gh.requests.length > 0 && gh.requests.every((r) => r.status === 503), "GitHub was down throughout");
  });

  it("a watcher restarted with reports pending delivers them once", async (t) => {
    const { s, gh, stack, sha } = await githubCase(t);
    gh.failFor(3600_000, 503);
    const first = await githubAgent(t, s.root, gh, stack);
    assert.equal((await waitForRecord(s.root, await publish(s.root, sha, { repository: REPO }))).outcome, "success");
    await waitFor("the final reports in the outbox", async () => ((await outbox(s.root)).length >= 5 ? true : undefined), 30_000);
    await first.stop();
    gh.failFor(0);
    await githubAgent(t, s.root, gh, stack);
    const story = await delivered(s.root, gh, sha);
    assert.equal(story.deployments.length, 1);
    assert.deepEqual(story.deployments[0]?.states, ["queued", "in_progress", "success"]);
    assert.deepEqual(story.commit, ["pending", "success"]);
    await new Promise((r) => setTimeout(r, 2500)); // a second pass of the loop sends nothing more
    assert.deepEqual(commitStory(gh, sha).commit, ["pending", "success"]);
    assert.deepEqual(gh.violations, []);
  });

  it("as a GitHub App: the installation token is minted with a JWT the server verifies, then used", async (t) => {
    const s = await useTempSpool(t);
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const gh = await startFakeGithub({ app: { id: "12345", publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString() } });
    onEnd(t, () => gh.close());
    const keyFile = `${s.root}/../app-key-${process.pid}.pem`;
    const { writeFile, rm } = await import("node:fs/promises");
    await writeFile(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }).toString(), { mode: 0o600 });
    onEnd(t, () => rm(keyFile, { force: true }));
    const stack = uniqueStack(t);
    const sha = randomSha();
    await buildWebImage(sha);
    await githubAgent(t, s.root, gh, stack, {
      GITHUB_TOKEN: "",
      GITHUB_APP_ID: "12345",
      GITHUB_APP_PRIVATE_KEY_FILE: keyFile,
      GITHUB_APP_INSTALLATION_ID: "777",
    });
    assert.equal((await waitForRecord(s.root, await publish(s.root, sha, { repository: REPO }))).outcome, "success");
    const story = await delivered(s.root, gh, sha);
    assert.deepEqual(story.deployments[0]?.states, ["queued", "in_progress", "success"]);
    const minted = gh.requests.filter((r) => r.template.startsWith("/app/installations/"));
    assert.equal(minted[0]?.params.installation_id, "777");
    assert.ok(minted.length >= 1 && minted.every((r) => r.status === 201));
    assert.deepEqual(gh.violations, []);
  });
});

describe("chat notifications from real deploys", () => {
  const SECRET = "notify-secret-0123456789";

  it("a failure reaches Slack, Discord and a generic endpoint (signed) in their own formats", async (t) => {
    const s = await useTempSpool(t);
    const r = await receiver(t);
    const stack = uniqueStack(t);
    const [good, broken] = [randomSha(), randomSha()];
    await Promise.all([buildWebImage(good), buildWebImage(broken, { crash: true })]);
    const agent = await startTestAgent(s.root, {
      STACK_FILE: stackFile("web"),
      STACK_NAME: stack,
      NOTIFY_URLS: `slack+${r.url}/slack, discord+${r.url}/discord, ${r.url}/generic`,
      NOTIFY_SECRET: SECRET,
      LOG_URL_TEMPLATE: "https://shop.example.com/deployments/{id}",
    });
    onEnd(t, () => agent.stop());
    // a running version first, so the crashing one is rolled back (a first deploy has nothing to roll back to)
    assert.equal((await waitForRecord(s.root, await publish(s.root, good, { repository: REPO }))).outcome, "success");
    const jobId = await publish(s.root, broken, { repository: REPO });
    assert.equal((await waitForRecord(s.root, jobId)).outcome, "rolled_back");
    await waitFor("three messages", async () => (r.got.length >= 3 ? true : undefined), 30_000);
    const by = (p: string) => r.got.find((g) => g.path === p) as Received;

    const slack = JSON.parse(by("/slack").body) as { text: string; blocks: { text: { type: string; text: string } }[] };
    assert.match(slack.text, new RegExp(`^:x: ${stack}: deploy of ${broken.slice(0, 12)} rolled back: `));
    assert.equal(slack.blocks[0]?.text.type, "mrkdwn");
    assert.match(slack.blocks[0]?.text.text ?? "", new RegExp(`<https://github.com/${REPO}/commit/${broken}\\|${broken.slice(0, 12)}>`));

    const discord = JSON.parse(by("/discord").body) as {
      embeds: { title: string; color: number; url: string; fields: { name: string; value: string }[] }[];
    };
    assert.match(discord.embeds[0]?.title ?? "", /rolled back/);
    assert.equal(discord.embeds[0]?.color, 0xcf222e);
    assert.equal(discord.embeds[0]?.url, `https://shop.example.com/deployments/${jobId}`);

    const generic = by("/generic");
    const expected = `sha256=${createHmac("sha256", SECRET).update(generic.body).digest("hex")}`;
    assert.equal(generic.headers["x-swarmhook-signature-256"], expected);
    const body = JSON.parse(generic.body) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), [
      "deliveryId",
      "durationMs",
      "event",
      "outcome",
      "reason",
      "repository",
      "sha",
      "stack",
      "url",
    ]);
    assert.deepEqual(
      [body.event, body.stack, body.repository, body.sha, body.outcome, body.deliveryId],
      ["deploy", stack, REPO, broken, "rolled_back", jobId],
    );
    assert.equal(typeof body.durationMs, "number");

    // the next good commit: every endpoint hears that the stack recovered, and after how many failures
    const fixed = randomSha();
    await buildWebImage(fixed);
    const fixedId = await publish(s.root, fixed, { repository: REPO, before: good });
    assert.equal((await waitForRecord(s.root, fixedId)).outcome, "success");
    await waitFor("three more messages", async () => (r.got.length >= 6 ? true : undefined), 30_000);
    const later = r.got.slice(3);
    const back = JSON.parse(later.find((g) => g.path === "/generic")?.body ?? "{}") as Record<string, unknown>;
    assert.deepEqual([back.event, back.stack, back.sha, back.outcome, back.failures], ["recovered", stack, fixed, "success", 1]);
    const slackBack = JSON.parse(later.find((g) => g.path === "/slack")?.body ?? "{}") as { text: string };
    assert.match(slackBack.text, new RegExp(`^:white_check_mark: ${stack}`));
    const discordBack = JSON.parse(later.find((g) => g.path === "/discord")?.body ?? "{}") as {
      embeds: { fields: { name: string; value: string }[] }[];
    };
    assert.equal(discordBack.embeds[0]?.fields.find((f) => f.name === "outcome")?.value, "recovered after 1");
    assert.ok(!r.got.some((g) => g.body.includes(SECRET)), "the secret is never in a message");
  });

  it("three identical failures within NOTIFY_REPEAT_S send one message", async (t) => {
    const s = await useTempSpool(t);
    const r = await receiver(t);
    const agent = await startTestAgent(s.root, {
      STACK_FILE: stackFile("invalid"),
      STACK_NAME: uniqueStack(t),
      NOTIFY_URLS: `${r.url}/generic`,
      NOTIFY_REPEAT_S: "3600",
    });
    onEnd(t, () => agent.stop());
    for (let i = 0; i < 3; i++) assert.equal((await waitForRecord(s.root, await publish(s.root, randomSha()))).outcome, "failed");
    await waitFor("the outbox emptied", async () => ((await outbox(s.root)).length === 0 ? true : undefined), 20_000);
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal((await readRecords(s.root)).length, 3);
    assert.equal(r.got.length, 1, r.got.map((g) => g.body).join("\n"));
  });
});

describe("report policy", () => {
  it("a reason naming <!channel> or @everyone pings no one: Slack's text is escaped, Discord's mentions are off", () => {
    const m = {
      event: "deploy" as const,
      stack: "app",
      repository: REPO,
      sha: randomSha(),
      outcome: "invalid",
      reason: "ref refs/tags/<!channel> & <@U123> @everyone",
      deliveryId: "d1",
      durationMs: null,
      url: null,
    };
    const slack = JSON.parse(renderNotification("slack", m, undefined).body) as { text: string; blocks: { text: { text: string } }[] };
    assert.ok(slack.text.includes("&lt;!channel&gt; &amp; &lt;@U123&gt;"), slack.text);
    assert.ok(!/<!channel>|<@U123>/.test(slack.text + (slack.blocks[0]?.text.text ?? "")), "no raw Slack control sequence");
    const discord = JSON.parse(renderNotification("discord", m, undefined).body) as { allowed_mentions: { parse: string[] } };
    assert.deepEqual(discord.allowed_mentions, { parse: [] });
  });

  it("retries within seconds, at most a minute apart for the first ten minutes of an outage, then slower", () => {
    assert.equal(retryDelay(1, 0), 2000);
    let elapsed = 0;
    const gaps: number[] = [];
    for (let n = 1; elapsed < 10 * 60_000; n++) {
      const d = retryDelay(n, elapsed);
      gaps.push(d);
      elapsed += d;
    }
    assert.ok(
      gaps.every((g) => g <= 60_000),
      gaps.join(","),
    );
    assert.ok(retryDelay(30, 11 * 60_000) > 60_000);
  });

  it("counts repeats and says how many when the stack recovers; NOTIFY_ON=all sends successes", () => {
    const policy = createNotifyPolicy({ on: "failure", repeatMs: 3600_000 });
    const t0 = Date.parse("2026-11-26T10:00:00Z");
    const fail = (i: number) =>
      makeRecord(new Date(t0 + i * 1000), { outcome: "failed", reason: `web: 0/2 running on swarmhook-test/web:${randomSha()}` });
    assert.equal(policy.decide(fail(0), null, new Date(t0)).length, 1);
    assert.equal(policy.decide(fail(1), null, new Date(t0 + 1000)).length, 0);
    assert.equal(policy.decide(fail(2), null, new Date(t0 + 2000)).length, 0);
    const [back] = policy.decide(makeRecord(new Date(t0 + 3000)), null, new Date(t0 + 3000));
    assert.deepEqual([back?.event, back?.failures], ["recovered", 3]);
    assert.equal(policy.decide(makeRecord(new Date(t0 + 4000)), null, new Date(t0 + 4000)).length, 0);
    assert.equal(createNotifyPolicy({ on: "all", repeatMs: 0 }).decide(makeRecord(new Date()), null, new Date()).length, 1);
  });

  it("configuration: formats by host or prefix; a bad URL or token combination is named, never echoed", () => {
    const base = { SPOOL_DIR: "/tmp", STACK_FILE: "/x.yaml", STACK_NAME: "app" };
    const c = loadAgentConfig({
      ...base,
      NOTIFY_URLS:
        "https://hooks.slack.com/services/T/B/X,https://discord.com/api/webhooks/1/abc,https://example.com/hook,slack+https://chat.local/x",
    });
    assert.deepEqual(
      c.reports.notify.targets.map((x) => x.format),
      ["slack", "discord", "json", "slack"],
    );
    assert.throws(
      () => loadAgentConfig({ ...base, NOTIFY_URLS: "ftp://secret-host/hook" }),
      (e: Error) => /NOTIFY_URLS/.test(e.message) && !e.message.includes("secret-host"),
    );
    assert.throws(
      () => loadAgentConfig({ ...base, GITHUB_TOKEN: TOKEN, GITHUB_APP_ID: "1" }),
      /GITHUB_TOKEN and GITHUB_APP_\* are both set/,
    );
    assert.throws(() => loadAgentConfig({ ...base, GITHUB_APP_ID: "1" }), /GITHUB_APP_PRIVATE_KEY_FILE is required/);
    assert.equal(loadAgentConfig(base).reports.github, undefined);
  });
});
