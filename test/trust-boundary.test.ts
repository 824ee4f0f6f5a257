// The spool as a trust boundary (#18): the API's uid/gid (1011), on a spool laid out by the project's
// own scripts/spool-setup.sh, can write its requests and nothing the watcher decides from; planted
// requests in today's and yesterday's formats deploy nothing and reach neither GitHub nor chat.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { JOB_VERSION, finishJob, openSpool, rollbackJobId, type ResultRecord } from "../spool/index.ts";
import { loadAgentConfig } from "../agent/config.ts";
import { loadApiConfig } from "../api/config.ts";
import { deliver, startTestApi } from "./helpers/api.ts";
import { pushPayload } from "./helpers/payloads.ts";
import { publish, readRecords, stackFile, startTestAgent, waitForRecord } from "./helpers/agent.ts";
import { onEnd, type Ends } from "./helpers/cleanup.ts";
import { startFakeGithub } from "./helpers/github.ts";
import { buildWebImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { ROOT } from "./helpers/proc.ts";
import { useTempSpool } from "./helpers/spool.ts";
import { docker, uniqueStack, waitFor } from "./helpers/swarm.ts";

const API = { uid: 1011, gid: 1011 };
const TOKEN = "github_pat_test_0123456789abcdefghijklmnopqrstuvwxyz";
const REPO = "acme/shop";

/** A temp spool laid out by scripts/spool-setup.sh (the watcher here is root), as on kvm8. */
async function setUpSpool(t: Ends) {
  const s = await useTempSpool(t);
  const { stdout } = await promisify(execFile)("bash", [path.join(ROOT, "scripts", "spool-setup.sh")], {
    env: { PATH: process.env.PATH ?? "", SPOOL_DIR: s.root, WATCHER_USER: "root", APP_GID: String(API.gid) },
  });
  assert.match(stdout, /tmp\/ new\/ ids\/ 2770/);
  return s;
}

interface Tried {
  op: string;
  ok: boolean;
  code?: string;
  [k: string]: unknown;
}

/** Run test/fixtures/as-api.mjs as uid/gid 1011 (copied where that user can read it) and return what each operation met. */
async function asApi(t: Ends, ops: Record<string, unknown>[]): Promise<Tried[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-as-api-"));
  onEnd(t, () => fs.rm(dir, { recursive: true, force: true }));
  await fs.chmod(dir, 0o755);
  const script = path.join(dir, "as-api.mjs");
  await fs.copyFile(path.join(ROOT, "test", "fixtures", "as-api.mjs"), script);
  await fs.chmod(script, 0o644);
  const child = spawn(process.execPath, [script, JSON.stringify(ops)], { ...API, cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.on("exit", r));
  assert.equal(code, 0, err);
  const said = JSON.parse(out) as { uid: number; gid: number; results: Tried[] };
  assert.deepEqual([said.uid, said.gid], [API.uid, API.gid], "the operations ran as the API's uid and gid");
  return said.results;
}

/** A chat endpoint on loopback that counts what reaches it. */
async function chat(t: Ends): Promise<{ url: string; got: string[] }> {
  const got: string[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      got.push(body);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onEnd(t, () => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got };
}

describe("the spool is a trust boundary", () => {
  it("as the API's uid/gid, nothing in work/, done/, failed/, state/, index/ or the outbox can be created, changed, renamed or replaced; tmp/ → new/ still works", async (t) => {
    const s = await setUpSpool(t);
    const spool = openSpool(s.root);
    // what the watcher has written: a record, the index line, a state file, a claimed job
    const now = new Date().toISOString();
    const record: ResultRecord = {
      outcome: "success",
      jobId: randomUUID(),
      job: null,
      stack: "app",
      timings: { received: now, claimed: now, started: now, finished: now },
      attempts: [],
      services: [],
      warnings: [],
    };
    const where = await finishJob(spool, record);
    await fs.writeFile(path.join(s.root, "state", "app.json"), "{}\n", { mode: 0o640 });
    await fs.writeFile(path.join(s.root, "work", `${randomUUID()}.json`), "{}\n", { mode: 0o640 });
    await fs.mkdir(`${s.root}.state/outbox`, { recursive: true, mode: 0o700 });
    await fs.chmod(`${s.root}.state`, 0o755);
    const [workFile] = await fs.readdir(path.join(s.root, "work"));
    const r = (...p: string[]) => path.join(s.root, ...p);
    const denied: Record<string, unknown>[] = [];
    for (const sub of ["work", "done", "failed", "state", "index", "wtmp"])
      denied.push({ op: "write", path: r(sub, `${randomUUID()}.json`) });
    denied.push(
      { op: "append", path: r(where) },
      { op: "overwrite", path: r(where), data: '{"outcome":"success"}' },
      { op: "append", path: r("index", "records.log") },
      { op: "overwrite", path: r("state", "app.json") },
      { op: "append", path: r("work", workFile as string) },
      { op: "chmod", path: r(where) },
      { op: "rename", from: r(where), to: r("done", "renamed.json") },
      { op: "unlink", path: r(where) },
      { op: "unlink", path: r("index", "records.log") },
      { op: "symlink", target: "/tmp/elsewhere", path: r("index", "records.log.new") },
      { op: "rename", from: r("done"), to: r("done.old") },
      { op: "rename", from: r("state"), to: r("state.old") },
      { op: "mkdir", path: r("outbox") },
      { op: "mkdir", path: r("done2") },
      { op: "write", path: `${s.root}.state/outbox/20261201T000000000Z-000001-x.github.json` },
    );
    // a replacement made in tmp/ (the API may write there) and moved over the watcher's files
    const allowed = [
      { op: "write", path: r("tmp", "planted.tmp") },
      { op: "link", from: r("tmp", "planted.tmp"), to: r("new", `${randomUUID()}.json`) },
      { op: "write", path: r("ids", randomUUID()) },
    ];
    const replace = [
      { op: "rename", from: r("tmp", "planted.tmp"), to: r("state", "app.json") },
      { op: "link", from: r("tmp", "planted.tmp"), to: r("done", "planted.json") },
    ];
    const results = await asApi(t, [...allowed, ...denied, ...replace]);
    for (const x of results.slice(0, allowed.length)) assert.ok(x.ok, `the API may ${x.op} ${JSON.stringify(x)}: its own requests`);
    for (const x of results.slice(allowed.length))
      assert.ok(!x.ok && (x.code === "EACCES" || x.code === "EPERM"), `refused by the file system: ${JSON.stringify(x)}`);
    assert.equal(await fs.readFile(r("state", "app.json"), "utf8"), "{}\n", "the state file is as the watcher wrote it");
    assert.equal((await fs.stat(r(where))).mode & 0o777, 0o640);
  });

  it("planted requests deploy nothing and reach neither GitHub nor chat: a rollback naming images (today's format), a record that does not exist, failed or is not the watcher's, an outbox entry on the spool", async (t) => {
    const s = await setUpSpool(t);
    const gh = await startFakeGithub({ token: TOKEN });
    onEnd(t, () => gh.close());
    const hook = await chat(t);
    const stack = uniqueStack(t);
    const good = randomSha();
    await buildWebImage(good);
    const agent = await startTestAgent(s.root, {
      STACK_FILE: stackFile("web"),
      STACK_NAME: stack,
      GITHUB_TOKEN: TOKEN,
      GITHUB_API_URL: gh.url,
      NOTIFY_URLS: hook.url,
      NOTIFY_SECRET: "q7Vd2kP9xL4mZ8rT",
    });
    onEnd(t, () => agent.stop());
    const first = await waitForRecord(s.root, await publish(s.root, good, { repository: REPO }));
    assert.equal(first.outcome, "success", first.reason);
    const image = () => docker(["service", "inspect", `${stack}_web`, "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);
    const running = await image();
    await waitFor(
      "the good deploy's reports delivered",
      async () => (gh.requests.some((q) => q.body.state === "success") ? true : undefined),
      30_000,
    );
    const seen = gh.requests.length;
    const chats = hook.got.length;

    // a record the watcher did not write (planted before the modes were tightened, or by another user)
    const [goodRecord] = (await fs.readdir(path.join(s.root, "done"))).filter((n) => n.endsWith(".json"));
    const foreign = `${goodRecord?.slice(0, -".json".length)}-foreign.json`;
    await fs.copyFile(path.join(s.root, "done", goodRecord as string), path.join(s.root, "done", foreign));
    await fs.chown(path.join(s.root, "done", foreign), API.uid, API.gid);
    const now = new Date().toISOString();
    const request = (fromRecord: string, extra: Record<string, unknown> = {}) => ({
      version: JOB_VERSION,
      kind: "rollback",
      deliveryId: rollbackJobId(good, new Date()),
      stack,
      fromRecord,
      cause: "operator",
      sender: "attacker",
      receivedAt: now,
      ...extra,
    });
    const planted = {
      images: request(`done/${goodRecord}`, {
        repository: REPO,
        ref: "refs/heads/main",
        sha: good,
        release: {
          stackFileHash: `sha256:${"0".repeat(64)}`,
          images: [{ service: "web", image: "attacker.example/pwn:latest", pinned: false }],
        },
      }),
      missing: request("done/20261201T000000000Z-nothing-here.json"),
      failed: request("failed/20261201T000000000Z-x.json"),
      notOurs: request(`done/${foreign}`),
    };
    const files = Object.fromEntries(Object.entries(planted).map(([k, job]) => [k, `${job.deliveryId}.json`]));
    // written as the API would, by uid 1011 through tmp/ into new/
    const ops: Record<string, unknown>[] = Object.entries(planted).flatMap(([k, job]) => [
      { op: "write", path: path.join(s.root, "tmp", `${k}.tmp`), data: JSON.stringify(job) },
      { op: "link", from: path.join(s.root, "tmp", `${k}.tmp`), to: path.join(s.root, "new", files[k] as string) },
    ]);
    // the outbox entry of yesterday's place and format: uid 1011 cannot make outbox/ any more, so root plants it
    const outboxEntry = {
      version: 1,
      jobId: "forged",
      createdAt: now,
      attempts: 0,
      nextAt: now,
      report: {
        target: "github",
        repository: "victim/other",
        sha: good,
        stack,
        environment: "production",
        production: true,
        step: { type: "commit_status", state: "success", description: "swarmhook/required-check" },
      },
    };
    ops.push({ op: "mkdir", path: path.join(s.root, "outbox") });
    const tried = await asApi(t, ops);
    assert.ok(
      tried.slice(0, -1).every((x) => x.ok),
      JSON.stringify(tried),
    );
    assert.equal(tried.at(-1)?.code, "EACCES", "the API cannot make outbox/ on the spool");
    await fs.mkdir(path.join(s.root, "outbox"));
    await fs.writeFile(path.join(s.root, "outbox", "20261201T000000000Z-000001-forged.github.json"), JSON.stringify(outboxEntry));

    const reasons = await waitFor(
      "every planted request quarantined",
      async () => {
        const invalid = (await readRecords(s.root)).filter((x) => x.outcome === "invalid");
        return invalid.length >= 4 ? invalid.map((x) => x.reason ?? "") : undefined;
      },
      30_000,
    );
    const expect = [
      /a rollback job names the record to go back to \(fromRecord\), never images/,
      /rollback refused: done\/20261201T000000000Z-nothing-here\.json is not among the watcher's records/,
      /schema: .*fromRecord must name a record in done\//,
      /rollback refused: done\/.*-foreign\.json was not written by the watcher \(owner uid 1011\)/,
    ];
    for (const re of expect)
      assert.ok(
        reasons.some((x) => re.test(x)),
        `${re} in ${reasons.join(" | ")}`,
      );
    const logged = JSON.stringify(agent.logs);
    for (const f of Object.values(files)) assert.ok(logged.includes(f.slice(0, -".json".length)), `${f} named in the log`);
    await new Promise((r) => setTimeout(r, 3000)); // the outbox loop has had three passes
    assert.equal(await image(), running, "the service still runs the good commit's image");
    // the only successes are the good deploy's record and the foreign copy of it planted above
    const successes = (await readRecords(s.root)).filter((x) => x.outcome === "success").map((x) => x.jobId);
    assert.deepEqual([...new Set(successes)], [first.jobId], "nothing else deployed");
    const after = gh.requests.slice(seen);
    assert.ok(!after.some((q) => q.path.includes("victim")), "nothing reached another repository");
    assert.ok(!after.some((q) => JSON.stringify(q.body).includes("required-check")), "the forged status never went out");
    assert.equal(hook.got.length, chats, "no chat message for a planted request");
    assert.deepEqual(gh.violations, []);
  });
});

describe("only branches deploy from branch rules", () => {
  it("DEPLOY_TAGS=v*: the API queues v1.2.0 and ignores latest-hack; the watcher deploys v1.2.0 and refuses a tag it was not told of", async (t) => {
    const s = await useTempSpool(t);
    const api = await startTestApi(s.root, { DEPLOY_TAGS: "v*", DEPLOY_BRANCHES: "main" });
    onEnd(t, () => api.close());
    const tagged = randomSha();
    const good = await deliver(api.url, { event: "push", body: JSON.stringify(pushPayload({ ref: "refs/tags/v1.2.0", after: tagged })) });
    assert.equal(good.status, 202, good.text);
    assert.ok(typeof good.json.jobId === "string");
    const hack = await deliver(api.url, {
      event: "push",
      body: JSON.stringify(pushPayload({ ref: "refs/tags/latest-hack", after: randomSha() })),
    });
    assert.equal(hack.status, 202);
    assert.match(String(hack.json.ignored), /tag latest-hack matches no DEPLOY_TAGS pattern/);

    // the watcher judges again: a job for latest-hack planted in new/ does not deploy either
    await buildWebImage(tagged);
    const stack = uniqueStack(t);
    const agent = await startTestAgent(s.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack, DEPLOY_TAGS: "v*" });
    onEnd(t, () => agent.stop());
    const deployed = await waitForRecord(s.root, good.json.jobId as string);
    assert.equal(deployed.outcome, "success", deployed.reason);
    const planted = await waitForRecord(s.root, await publish(s.root, randomSha(), { ref: "refs/tags/latest-hack" }));
    assert.equal(planted.outcome, "invalid");
    assert.match(planted.reason ?? "", /no stack is configured for .* refs\/tags\/latest-hack/);
  });

  it("a workflow_run for a tag named main is refused (GitHub's compare says its commit is not on main); one on main deploys; without GitHub credentials none does", async (t) => {
    const s = await useTempSpool(t);
    const [tip, older, tagCommit] = [randomSha(), randomSha(), randomSha()];
    await buildWebImage(older);
    const gh = await startFakeGithub({ token: TOKEN, branches: { main: [tip, older] } });
    onEnd(t, () => gh.close());
    const stack = uniqueStack(t);
    const agent = await startTestAgent(s.root, {
      STACK_FILE: stackFile("web"),
      STACK_NAME: stack,
      GITHUB_TOKEN: TOKEN,
      GITHUB_API_URL: gh.url,
    });
    onEnd(t, () => agent.stop());
    const run = { event: "workflow_run" as const, ref: "refs/heads/main", repository: REPO };
    const tag = await waitForRecord(s.root, await publish(s.root, tagCommit, run));
    assert.equal(tag.outcome, "invalid", tag.reason);
    assert.match(tag.reason ?? "", /is not on main \(GitHub's compare\)/);
    const onMain = await waitForRecord(s.root, await publish(s.root, older, run));
    assert.equal(onMain.outcome, "success", onMain.reason);
    const compares = gh.requests.filter((r) => r.template === "/repos/{owner}/{repo}/compare/{basehead}").map((r) => r.params.basehead);
    assert.deepEqual(compares, [`main...${tagCommit}`, `main...${older}`]);
    assert.deepEqual(gh.violations, []);
    await agent.stop();

    const bare = await startTestAgent(s.root, { STACK_FILE: stackFile("web"), STACK_NAME: stack });
    onEnd(t, () => bare.stop());
    const blind = await waitForRecord(s.root, await publish(s.root, older, run));
    assert.equal(blind.outcome, "invalid");
    assert.match(blind.reason ?? "", /give the watcher GitHub credentials .* or deploy the stack from git/);
  });

  it("config: a bad DEPLOY_TAGS pattern and a STACK_ENV naming the watcher's own credential are refused, naming the variable", () => {
    const base = { SPOOL_DIR: "/tmp", STACK_FILE: stackFile("web"), STACK_NAME: "x" };
    assert.throws(() => loadAgentConfig({ ...base, DEPLOY_TAGS: "v*,$(reboot)" }), /DEPLOY_TAGS must be true, false or tag patterns/);
    assert.throws(
      () => loadAgentConfig({ ...base, STACK_ENV: "EMAIL,GITHUB_TOKEN" }),
      /STACK_ENV: GITHUB_TOKEN is the watcher's own credential/,
    );
    assert.deepEqual(loadAgentConfig({ ...base, DEPLOY_TAGS: "true" }).stacks[0]?.tags, ["*"]);
    assert.deepEqual(
      loadAgentConfig(base).stacks[0]?.branches,
      ["main"],
      "the watcher's own branch rule: DEPLOY_BRANCHES, main by default",
    );
  });

  it("weak secrets are refused naming the variable: repeated characters, a repeated chunk, a placeholder word anywhere", () => {
    const api = (secret: string) => () => loadApiConfig({ SPOOL_DIR: "/tmp", GITHUB_WEBHOOK_SECRET: secret });
    assert.throws(api("a".repeat(36)), /GITHUB_WEBHOOK_SECRET is too easy to guess/);
    assert.throws(api("abc123".repeat(8)), /GITHUB_WEBHOOK_SECRET is too easy to guess/);
    assert.throws(api("please-change-me-0123456789abcdefghijkl"), /GITHUB_WEBHOOK_SECRET is a placeholder/);
    assert.doesNotThrow(api("9f2c4e7a1b8d3f6e0a5c2b9d4e7f1a3c6b8d0e2f4a6c8e0b"));
    assert.throws(
      () => loadAgentConfig({ SPOOL_DIR: "/tmp", STACK_FILE: stackFile("web"), STACK_NAME: "x", NOTIFY_SECRET: "x".repeat(20) }),
      /NOTIFY_SECRET/,
    );
  });
});
