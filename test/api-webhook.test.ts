import { Webhooks } from "@octokit/webhooks";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { createRejectLog } from "../api/reject-log.ts";
import { DeployJobSchema, claimJob, finishJob, openSpool } from "../spool/index.ts";
import { SECRET, deliver, startTestApi, type TestApi } from "./helpers/api.ts";
import { randomSha } from "./helpers/jobs.ts";
import { examples, pushPayload, sign } from "./helpers/payloads.ts";
import { spawnTs, waitForLine } from "./helpers/proc.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";

const pending = async (root: string) => (await fs.readdir(path.join(root, "new"))).sort();

describe("POST /api/webhook/github", () => {
  let t: TempSpool;
  let api: TestApi;
  before(async () => {
    t = await tempSpool();
    api = await startTestApi(t.root, {
      DEPLOY_REPOSITORY: "Codertocat/Hello-World",
      DEPLOY_BRANCHES: "main,release",
      WEBHOOK_BODY_LIMIT: "65536",
    });
  });
  after(async () => {
    await api.close();
    await t.cleanup();
  });

  it("queues a signed push to a configured branch: 202 { jobId } once the job is in new/", async () => {
    const sha = randomSha();
    const deliveryId = randomUUID();
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: sha }));
    const r = await deliver(api.url, { event: "push", body, deliveryId });
    assert.equal(r.status, 202, r.text);
    assert.deepEqual(r.json, { jobId: deliveryId });
    const job = DeployJobSchema.parse(JSON.parse(await fs.readFile(path.join(t.root, "new", `${deliveryId}.json`), "utf8")));
    assert.equal(job.sha, sha);
    assert.equal(job.ref, "refs/heads/main");
    assert.equal(job.repository, "Codertocat/Hello-World");
    assert.equal(job.sender, "Codertocat");
    assert.equal(job.committedAt, "2019-05-15T15:19:25Z");
  });

  it("verifies GitHub's published test vector over the raw bytes", async () => {
    // the vector's secret is shorter than the API accepts at start: set it past the config check
    const vector = await startTestApi(t.root, {}, undefined, { secret: "It's a Secret to Everybody" });
    try {
      const body = "Hello, World!";
      const signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
      assert.equal(sign("It's a Secret to Everybody", body), signature);
      const r = await deliver(vector.url, { event: "push", body, headers: { "x-hub-signature-256": signature } });
      assert.equal(r.status, 400, "the signature verified; the body is then refused as JSON");
      assert.match(r.text, /not valid JSON/);
      const bad = await deliver(vector.url, { event: "push", body: "Hello, World?", headers: { "x-hub-signature-256": signature } });
      assert.equal(bad.status, 401);
    } finally {
      await vector.close();
    }
  });

  it("answers 401 for missing, SHA-1-only, malformed, repeated and wrong signatures, never disclosing the digest", async () => {
    const body = JSON.stringify(pushPayload());
    const expected = sign(SECRET, body);
    const hex = expected.slice("sha256=".length);
    const cases: Record<string, Record<string, string>> = {
      missing: { "x-hub-signature-256": "" },
      sha1Only: { "x-hub-signature-256": "", "x-hub-signature": "sha1=0123456789abcdef0123456789abcdef01234567" },
      short: { "x-hub-signature-256": expected.slice(0, -2) },
      long: { "x-hub-signature-256": `${expected}00` },
      nonHex: { "x-hub-signature-256": `sha256=${"z".repeat(64)}` },
      upper: { "x-hub-signature-256": `sha256=${hex.toUpperCase()}` },
      noPrefix: { "x-hub-signature-256": hex },
      sha1Prefix: { "x-hub-signature-256": `sha1=${hex}` },
      repeated: { "x-hub-signature-256": `${expected}, ${expected}` },
      wrongSecret: { "x-hub-signature-256": sign("another-secret-entirely", body) },
    };
    const before = await pending(t.root);
    for (const [name, headers] of Object.entries(cases)) {
      const h = { ...headers };
      const res = await fetch(`${api.url}/api/webhook/github`, {
        method: "POST",
        headers: Object.fromEntries(
          Object.entries({ "content-type": "application/json", "x-github-event": "push", "x-github-delivery": randomUUID(), ...h }).filter(
            ([, v]) => v !== "",
          ),
        ),
        body,
      });
      const text = await res.text();
      assert.equal(res.status, 401, `${name}: ${text}`);
      assert.ok(!text.includes(hex), `${name}: the expected digest is not disclosed`);
      if (name === "sha1Only") assert.match(text, /SHA-1/);
    }
    assert.deepEqual(await pending(t.root), before);
  });

  it("accepts what @octokit/webhooks signs, for every example push, as the body streams in", async () => {
    const octokit = new Webhooks({ secret: SECRET });
    for (const p of examples("push").filter((e) => e.deleted === false && e.head_commit)) {
      const body = JSON.stringify({
        ...p,
        ref: "refs/heads/main",
        repository: { ...(p.repository as object), full_name: "Codertocat/Hello-World" },
      });
      const signature = await octokit.sign(body);
      assert.equal(await octokit.verify(body, signature), true);
      const r = await deliver(api.url, { event: "push", body, headers: { "x-hub-signature-256": signature } });
      assert.equal(r.status, 202, r.text);
    }
  });

  it("refuses a signature computed over re-serialized JSON", async () => {
    const payload = pushPayload();
    const body = JSON.stringify(payload, null, 2); // the bytes on the wire
    const r = await deliver(api.url, { event: "push", body, headers: { "x-hub-signature-256": sign(SECRET, JSON.stringify(payload)) } });
    assert.equal(r.status, 401);
  });

  it("verifies a UTF-8 body with emoji and U+2028 exactly as sent", async () => {
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha(), message: "ship it 🚀\u2028line two ✓" }));
    assert.ok(body.includes("\u2028"), "the raw separator is in the bytes");
    const r = await deliver(api.url, { event: "push", body });
    assert.equal(r.status, 202, r.text);
  });

  it("answers 413 over the body limit (declared or chunked), 415 for a non-JSON type, 400 for bad JSON", async () => {
    const big = JSON.stringify({ ...pushPayload(), padding: "x".repeat(70_000) });
    assert.equal((await deliver(api.url, { event: "push", body: big })).status, 413);
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(new TextEncoder().encode("x".repeat(8192)));
        controller.close();
      },
    });
    const res = await fetch(`${api.url}/api/webhook/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": randomUUID(),
        "x-hub-signature-256": `sha256=${"0".repeat(64)}`,
      },
      body: chunked,
      duplex: "half",
    } as RequestInit);
    assert.equal(res.status, 413);
    const plain = await deliver(api.url, { event: "push", body: "{}", headers: { "content-type": "text/plain" } });
    assert.equal(plain.status, 415);
    assert.match(plain.text, /application\/json/);
    assert.equal((await deliver(api.url, { event: "push", body: "{ not json" })).status, 400);
  });

  it("answers ping with 200 and no job", async () => {
    const before = await pending(t.root);
    for (const body of examples("ping")) {
      const r = await deliver(api.url, { event: "ping", body: JSON.stringify(body) });
      assert.equal(r.status, 200);
    }
    assert.deepEqual(await pending(t.root), before);
  });

  it("ignores other events, repositories, branches, deletions and tags with 202 and the reason", async () => {
    const before = await pending(t.root);
    const deletion = examples("push").find((e) => e.deleted === true) as Record<string, unknown>;
    const tag = examples("push").find((e) => e.deleted === false && String(e.ref).startsWith("refs/tags/")) as Record<string, unknown>;
    const cases: [string, string, unknown, RegExp][] = [
      ["issues", "issues", examples("issues")[0], /event issues does not deploy/],
      ["workflow_run not enabled", "workflow_run", examples("workflow_run")[1], /not in DEPLOY_EVENTS/],
      ["other repository", "push", pushPayload({ ref: "refs/heads/main", repository: "someone/else" }), /repository someone\/else/],
      ["other branch", "push", pushPayload({ ref: "refs/heads/feature" }), /refs\/heads\/feature is not a branch/],
      ["branch deletion", "push", { ...deletion, ref: "refs/heads/main" }, /deletion/],
      ["tag push", "push", tag, /DEPLOY_TAGS/],
    ];
    for (const [name, event, payload, reason] of cases) {
      const r = await deliver(api.url, { event, body: JSON.stringify(payload) });
      assert.equal(r.status, 202, `${name}: ${r.text}`);
      assert.match(String(r.json.ignored), reason, name);
    }
    assert.deepEqual(await pending(t.root), before);
  });

  it("keeps one job per delivery id: sequential and concurrent redeliveries are duplicates", async () => {
    const deliveryId = randomUUID();
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    const first = await deliver(api.url, { event: "push", body, deliveryId });
    assert.equal(first.status, 202);
    const again = await deliver(api.url, { event: "push", body, deliveryId });
    assert.equal(again.status, 200);
    assert.deepEqual(again.json, { jobId: deliveryId, duplicate: true });

    const second = await startTestApi(t.root, { DEPLOY_REPOSITORY: "Codertocat/Hello-World", DEPLOY_BRANCHES: "main" });
    try {
      const id = randomUUID();
      const b = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
      // 24 at once, half to each of two API processes on the one spool (two replicas on NFS)
      const answers = await Promise.all(
        Array.from({ length: 24 }, (_, i) => deliver((i % 2 ? second : api).url, { event: "push", body: b, deliveryId: id })),
      );
      const statuses = answers.map((a) => a.status);
      assert.equal(statuses.filter((x) => x === 202).length, 1, statuses.join(","));
      assert.equal(statuses.filter((x) => x === 200).length, 23, statuses.join(","));
      assert.equal((await pending(t.root)).filter((n) => n === `${id}.json`).length, 1);
    } finally {
      await second.close();
    }
  });

  it("answers 503 while the spool root is gone and 202 again once it is back, writing nothing partial", async () => {
    const s = await tempSpool();
    const a = await startTestApi(s.root, { DEPLOY_BRANCHES: "main" });
    try {
      const body = () => JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
      assert.equal((await deliver(a.url, { event: "push", body: body() })).status, 202);
      await fs.rm(s.root, { recursive: true });
      const down = await deliver(a.url, { event: "push", body: body() });
      assert.equal(down.status, 503);
      assert.match(down.text, /spool unavailable \(root_missing\)/);
      assert.equal(existsSync(s.root), false, "the API never creates the root");
      assert.ok(
        a.logs.some((l) => /"level":50.*spool unavailable/.test(l)),
        "logged as an error",
      );
      await fs.mkdir(s.root);
      const back = await deliver(a.url, { event: "push", body: body() });
      assert.equal(back.status, 202, back.text);
      assert.deepEqual(await fs.readdir(path.join(s.root, "tmp")), []);
      assert.equal((await pending(s.root)).length, 1);
    } finally {
      await a.close();
      await s.cleanup();
    }
  });

  it("treats shell metacharacters in a ref as a plain string", async () => {
    const marker = `/tmp/swarmhook-pwned-${randomUUID()}`;
    const branch = `x$(touch${"${IFS}"}${marker})`;
    const s = await tempSpool();
    const a = await startTestApi(s.root, { DEPLOY_BRANCHES: `main ${branch}` });
    try {
      const evil = await deliver(a.url, {
        event: "push",
        body: JSON.stringify(pushPayload({ ref: `refs/heads/main;touch ${marker}`, after: randomSha() })),
      });
      assert.equal(evil.status, 202);
      assert.ok(evil.json.ignored, "a ref that differs by one character is ignored");
      const exact = await deliver(a.url, {
        event: "push",
        body: JSON.stringify(pushPayload({ ref: `refs/heads/${branch}`, after: randomSha() })),
      });
      assert.equal(exact.status, 202, exact.text);
      const job = DeployJobSchema.parse(
        JSON.parse(await fs.readFile(path.join(s.root, "new", `${String(exact.json.jobId)}.json`), "utf8")),
      );
      assert.equal(job.ref, `refs/heads/${branch}`, "kept verbatim, as data");
      assert.equal(existsSync(marker), false);
    } finally {
      await a.close();
      await s.cleanup();
    }
  });

  it("accepts GitHub's form-encoded deliveries (its UI's default): HMAC over the form bytes, JSON from payload", async () => {
    const pushes = examples("push").filter((e) => e.deleted === false && e.head_commit);
    assert.ok(pushes.length > 0);
    for (const p of pushes) {
      const sha = randomSha();
      const payload = {
        ...p,
        ref: "refs/heads/main",
        after: sha,
        repository: { ...(p.repository as object), full_name: "Codertocat/Hello-World" },
      };
      // as GitHub sends it: application/x-www-form-urlencoded, the JSON in the payload field
      const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
      const deliveryId = randomUUID();
      const r = await deliver(api.url, {
        event: "push",
        body,
        deliveryId,
        headers: { "content-type": "application/x-www-form-urlencoded" },
      });
      assert.equal(r.status, 202, r.text);
      const job = DeployJobSchema.parse(JSON.parse(await fs.readFile(path.join(t.root, "new", `${deliveryId}.json`), "utf8")));
      assert.equal(job.sha, sha);
    }
    const signedJson = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    const tampered = await deliver(api.url, {
      event: "push",
      body: new URLSearchParams({ payload: signedJson }).toString(),
      headers: { "content-type": "application/x-www-form-urlencoded", "x-hub-signature-256": sign(SECRET, signedJson) },
    });
    assert.equal(tampered.status, 401, "the signature covers the form bytes, not the JSON inside");
    const noPayload = await deliver(api.url, {
      event: "push",
      body: "other=1",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    assert.equal(noPayload.status, 400);
    assert.match(noPayload.text, /payload field/);
  });

  it("logs rejected requests at warn, at most one line per status in 10 s, counting the rest", async () => {
    // a fresh API: no 401 logged by an earlier test inside its 10 s window
    const fresh = await startTestApi(t.root, { DEPLOY_REPOSITORY: "Codertocat/Hello-World", DEPLOY_BRANCHES: "main" });
    try {
      const body = JSON.stringify(pushPayload());
      for (let i = 0; i < 25; i++) {
        const r = await deliver(fresh.url, {
          event: "push",
          body,
          headers: { "x-hub-signature-256": sign("a-different-secret-0123456789abcdef", body) },
        });
        assert.equal(r.status, 401);
      }
      const lines = fresh.logs.map((l) => JSON.parse(l) as { level: number; status?: number; msg: string });
      const rejected = lines.filter((l) => l.msg === "webhook rejected" && l.status === 401);
      assert.equal(rejected.length, 1, `${rejected.length} lines for 25 rejections`);
      assert.equal(rejected[0]?.level, 40);
    } finally {
      await fresh.close();
    }
    // the line after the window says how many were left out (a clock the test moves)
    const out: { notLogged?: number; status: number }[] = [];
    const log = pino({ level: "warn" }, { write: (l: string) => void out.push(JSON.parse(l) as { notLogged?: number; status: number }) });
    let now = 0;
    const rejected = createRejectLog(log, 10_000, () => now);
    for (let i = 0; i < 25; i++) rejected({ status: 401, reason: "bad signature" });
    rejected({ status: 413, reason: "too large" });
    now = 9_999;
    rejected({ status: 401, reason: "bad signature" });
    assert.deepEqual(
      out.map((l) => [l.status, l.notLogged]),
      [
        [401, undefined],
        [413, undefined],
      ],
    );
    now = 10_000;
    rejected({ status: 401, reason: "bad signature" });
    assert.deepEqual(out.at(-1) && [out.at(-1)?.status, out.at(-1)?.notLogged], [401, 25], "24 in the burst and 1 at 9.999 s");
  });

  it("answers a redelivery by what became of the first: pending → duplicate, success → already handled, failure → a new job", async () => {
    const deliveryId = randomUUID();
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    assert.equal((await deliver(api.url, { event: "push", body, deliveryId })).status, 202);
    assert.deepEqual((await deliver(api.url, { event: "push", body, deliveryId })).json, { jobId: deliveryId, duplicate: true });
    const finishAs = async (outcome: "success" | "failed") => {
      const claimed = await claimJob(openSpool(t.root), `${deliveryId}.json`);
      assert.equal(claimed.status, "claimed");
      if (claimed.status !== "claimed" || claimed.job.kind !== "deploy") return;
      const now = new Date().toISOString();
      const timings = { received: now, claimed: now, started: now, finished: now };
      await finishJob(openSpool(t.root), {
        outcome,
        jobId: deliveryId,
        job: claimed.job,
        stack: "app",
        timings,
        attempts: [],
        services: [],
        warnings: [],
      });
    };
    await finishAs("failed");
    // the failed delivery's marker is taken over by one of 20 concurrent redeliveries, never two
    const retries = await Promise.all(Array.from({ length: 20 }, () => deliver(api.url, { event: "push", body, deliveryId })));
    const statuses = retries.map((r) => r.status);
    assert.equal(statuses.filter((x) => x === 202).length, 1, `a failed delivery, redelivered, is one new attempt: ${statuses.join(",")}`);
    assert.ok(
      retries.filter((r) => r.status !== 202).every((r) => r.status === 200 && (r.json as { duplicate?: boolean }).duplicate === true),
      JSON.stringify(retries.map((r) => r.json)),
    );
    assert.equal((await pending(t.root)).filter((n) => n === `${deliveryId}.json`).length, 1);
    // whichever of the 20 won, its job says it is a redelivery (every writer that saw the outcome labels its job)
    const requeued = JSON.parse(await fs.readFile(path.join(t.root, "new", `${deliveryId}.json`), "utf8")) as { redelivery?: boolean };
    assert.equal(requeued.redelivery, true);
    await finishAs("success");
    const handled = await deliver(api.url, { event: "push", body, deliveryId });
    assert.equal(handled.status, 200);
    assert.deepEqual(handled.json, { jobId: deliveryId, alreadyHandled: "success" });
    assert.ok(!(await pending(t.root)).includes(`${deliveryId}.json`));
  });

  it("logs one line per delivery and never a signature or secret-bearing header", async () => {
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    const signature = sign(SECRET, body);
    await deliver(api.url, {
      event: "push",
      body,
      headers: { authorization: "Bearer hunter2-token", "x-github-encoded-secret": "c2VjcmV0" },
    });
    const all = api.logs.join("");
    assert.ok(all.includes('"outcome":"queued"'));
    for (const secret of [signature.slice(7), SECRET, "hunter2-token", "c2VjcmV0"])
      assert.ok(!all.includes(secret), `${secret} not logged`);
    assert.doesNotMatch(all, /x-hub-signature|authorization/i);
  });
});

describe("workflow_run deliveries", () => {
  let t: TempSpool;
  let api: TestApi;
  before(async () => {
    t = await tempSpool();
    api = await startTestApi(t.root, { DEPLOY_EVENTS: "workflow_run", DEPLOY_BRANCHES: "master", DEPLOY_WORKFLOWS: "Build" });
  });
  after(async () => {
    await api.close();
    await t.cleanup();
  });

  it("deploys a successful completed run of a listed workflow on a configured branch, and nothing else", async () => {
    const runs = examples("workflow_run");
    const success = runs.find(
      (r) => r.action === "completed" && (r.workflow_run as { conclusion: string }).conclusion === "success",
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a payload fixture edited in place
    ) as Record<string, any>;
    success.workflow_run.name = "Build";
    const r = await deliver(api.url, { event: "workflow_run", body: JSON.stringify(success) });
    assert.equal(r.status, 202, r.text);
    const job = DeployJobSchema.parse(JSON.parse(await fs.readFile(path.join(t.root, "new", `${String(r.json.jobId)}.json`), "utf8")));
    assert.equal(job.sha, success.workflow_run.head_sha);
    assert.equal(job.ref, "refs/heads/master");
    assert.equal(job.event, "workflow_run");

    const other = structuredClone(success);
    other.workflow_run.name = "Lint";
    assert.match(String((await deliver(api.url, { event: "workflow_run", body: JSON.stringify(other) })).json.ignored), /DEPLOY_WORKFLOWS/);
    const requested = runs.find((x) => x.action === "requested");
    assert.match(
      String((await deliver(api.url, { event: "workflow_run", body: JSON.stringify(requested) })).json.ignored),
      /action requested/,
    );
    const fork = structuredClone(success);
    fork.workflow_run.head_repository = { full_name: "attacker/octo-repo" };
    assert.match(String((await deliver(api.url, { event: "workflow_run", body: JSON.stringify(fork) })).json.ignored), /fork/);
    assert.equal((await pending(t.root)).length, 1);
  });
});

describe("the api process", () => {
  const runApi = (env: Record<string, string>) => spawnTs("api/main.ts", [], env);

  it("refuses to start on a bad value, naming the variable (exit 1)", async () => {
    for (const [env, name] of [
      [{ SPOOL_DIR: "/tmp", GITHUB_WEBHOOK_SECRET: "" }, /GITHUB_WEBHOOK_SECRET/],
      [{ SPOOL_DIR: "/tmp", GITHUB_WEBHOOK_SECRET: SECRET, PORT: "eighty" }, /PORT/],
      [{ SPOOL_DIR: "/tmp", GITHUB_WEBHOOK_SECRET_FILE: "/nonexistent/secret" }, /GITHUB_WEBHOOK_SECRET_FILE/],
      [{ GITHUB_WEBHOOK_SECRET: SECRET }, /SPOOL_DIR/],
      [{ SPOOL_DIR: "/tmp", GITHUB_WEBHOOK_SECRET: SECRET, DATABASE_URL: "postgres://x@127.0.0.1/db" }, /VISIT_SALT/],
      // a copy of .env.example as it is: its placeholders are refused, each named
      [{ SPOOL_DIR: "/tmp", GITHUB_WEBHOOK_SECRET: "change-me-to-openssl-rand-hex-32" }, /GITHUB_WEBHOOK_SECRET is a placeholder/],
      [{ SPOOL_DIR: "/tmp", GITHUB_WEBHOOK_SECRET: "a".repeat(31) }, /GITHUB_WEBHOOK_SECRET must be at least 32 characters/],
      [
        {
          SPOOL_DIR: "/tmp",
          GITHUB_WEBHOOK_SECRET: SECRET,
          DATABASE_URL: "postgres://x@127.0.0.1/db",
          VISIT_SALT: "change-me-to-another-random-string",
        },
        /VISIT_SALT is a placeholder/,
      ],
      [
        { SPOOL_DIR: "/tmp", GITHUB_WEBHOOK_SECRET: SECRET, HISTORY_TOKEN: "change-me-to-a-third-openssl-rand-hex-32" },
        /HISTORY_TOKEN is a placeholder/,
      ],
    ] as const) {
      const p = runApi(env);
      const code = await p.exited;
      const err = p.err();
      assert.equal(code, 1, err);
      assert.match(err, name);
      assert.ok(!err.includes(SECRET));
    }
  });

  it("drains an in-flight delivery on SIGTERM, then exits 0", async () => {
    const s = await tempSpool();
    const port = 20000 + Math.floor(Math.random() * 20000);
    const p = runApi({ SPOOL_DIR: s.root, GITHUB_WEBHOOK_SECRET: SECRET, PORT: String(port), HOST: "127.0.0.1", DEPLOY_BRANCHES: "main" });
    const child = p.child;
    try {
      await waitForLine(p, '"listening"', undefined, 30_000);
      const body = new TextEncoder().encode(JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() })));
      let send!: (b: Uint8Array) => void;
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(body.subarray(0, 100));
          send = (rest) => {
            controller.enqueue(rest);
            controller.close();
          };
        },
      });
      const answer = fetch(`http://127.0.0.1:${port}/api/webhook/github`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "push",
          "x-github-delivery": randomUUID(),
          "x-hub-signature-256": sign(SECRET, Buffer.from(body)),
        },
        body: stream,
        duplex: "half",
      } as RequestInit);
      await new Promise((r) => setTimeout(r, 300));
      child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 300));
      send(body.subarray(100));
      const res = await answer;
      assert.equal(res.status, 202, await res.text());
      assert.equal(await p.exited, 0);
      assert.equal((await pending(s.root)).length, 1);
    } finally {
      child.kill("SIGKILL");
      await s.cleanup();
    }
  });
});
