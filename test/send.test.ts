import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { DeployJobSchema } from "../spool/index.ts";
import { SECRET, startTestApi, type TestApi } from "./helpers/api.ts";
import { randomSha } from "./helpers/jobs.ts";
import { spawnTs } from "./helpers/proc.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
  const p = spawnTs("bin/swarmhook.ts", args, env);
  const code = await p.exited;
  return { code, out: p.out(), err: p.err() };
}

describe("swarmhook send", () => {
  let t: TempSpool;
  let api: TestApi;
  before(async () => {
    t = await tempSpool();
    api = await startTestApi(t.root, { DEPLOY_REPOSITORY: "acme/app", DEPLOY_BRANCHES: "main" });
  });
  after(async () => {
    await api.close();
    await t.cleanup();
  });

  it("signs a push the API accepts, and the job appears in the spool", async () => {
    const sha = randomSha();
    const r = await cli(["send", "--repository", "acme/app", "--sha", sha, "--committed-at", "2026-11-24T00:00:00Z"], {
      DEPLOY_WEBHOOK_URL: `${api.url}/api/webhook/github`,
      DEPLOY_WEBHOOK_SECRET: SECRET,
    });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^202 \{"jobId":"[0-9a-f-]{36}"\}/);
    const jobId = JSON.parse(r.out.slice(4)).jobId as string;
    const job = DeployJobSchema.parse(JSON.parse(await fs.readFile(path.join(t.root, "new", `${jobId}.json`), "utf8")));
    assert.equal(job.sha, sha);
    assert.equal(job.committedAt, "2026-11-24T00:00:00Z");
    assert.equal(job.repository, "acme/app");
  });

  it("exits 1 on a non-2xx answer and 2 on bad usage, never echoing the secret", async () => {
    const secretFile = path.join(t.root, "wrong-secret");
    await fs.writeFile(secretFile, "not-the-right-secret-at-all\n");
    const wrong = await cli(
      ["send", "--url", `${api.url}/api/webhook/github`, "--secret-file", secretFile, "--repository", "acme/app", "--sha", randomSha()],
      {},
    );
    assert.equal(wrong.code, 1);
    assert.match(wrong.out, /^401 /);
    assert.ok(!(wrong.out + wrong.err).includes("not-the-right-secret"));
    const usage = await cli(["send", "--repository", "acme/app", "--sha", "abc"], {
      DEPLOY_WEBHOOK_URL: api.url,
      DEPLOY_WEBHOOK_SECRET: SECRET,
    });
    assert.equal(usage.code, 2);
    assert.match(usage.err, /40-hex/);
    const down = await cli(["send", "--url", "http://127.0.0.1:9/api/webhook/github", "--repository", "acme/app", "--sha", randomSha()], {
      DEPLOY_WEBHOOK_SECRET: SECRET,
    });
    assert.equal(down.code, 2);
    assert.match(down.err, /fetch failed|ECONNREFUSED/);
  });
});

describe("the Actions workflow's deploy step", () => {
  it("runs swarmhook send as the workflow does, and the API queues the job", async () => {
    const { parse } = await import("yaml");
    const { execFile } = await import("node:child_process");
    const root = path.join(import.meta.dirname, "..");
    const wf = parse(await fs.readFile(path.join(root, ".github", "workflows", "deploy.yml"), "utf8")) as {
      jobs: Record<string, { steps: { name?: string; run?: string; env?: Record<string, string> }[] }>;
    };
    const step = Object.values(wf.jobs)
      .flatMap((j) => j.steps)
      .find((s) => s.run?.includes("swarmhook -- send"));
    assert.ok(step?.run, "the workflow has a send step");
    // DEPLOY_HISTORY_TOKEN (an environment secret) makes the step wait for the verdict (send --wait); unset here: it does not
    assert.deepEqual(Object.keys(step.env ?? {}).sort(), [
      "DEPLOY_HISTORY_TOKEN",
      "DEPLOY_WEBHOOK_SECRET",
      "DEPLOY_WEBHOOK_URL",
      "PUSH_BEFORE",
    ]);
    assert.match(step.run, /--wait --timeout 1800/);
    const t = await tempSpool();
    const api = await startTestApi(t.root, { DEPLOY_REPOSITORY: "acme/app", DEPLOY_BRANCHES: "main" });
    try {
      const sha = randomSha();
      const before = randomSha();
      const out = await new Promise<string>((resolve, reject) =>
        execFile(
          "bash",
          ["-euo", "pipefail", "-c", step.run as string],
          {
            cwd: root,
            env: {
              PATH: process.env.PATH ?? "",
              HOME: process.env.HOME ?? "/root",
              GITHUB_REPOSITORY: "acme/app",
              GITHUB_REF_NAME: "main",
              GITHUB_SHA: sha,
              GITHUB_ACTOR: "octocat",
              DEPLOY_WEBHOOK_URL: `${api.url}/api/webhook/github`,
              DEPLOY_WEBHOOK_SECRET: SECRET,
              PUSH_BEFORE: before, // github.event.before: the push chain
            },
          },
          (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
        ),
      );
      assert.match(out, /^202 /);
      const [name] = await fs.readdir(path.join(t.root, "new"));
      const job = DeployJobSchema.parse(JSON.parse(await fs.readFile(path.join(t.root, "new", name as string), "utf8")));
      assert.deepEqual([job.sha, job.before, job.repository, job.ref, job.sender], [sha, before, "acme/app", "refs/heads/main", "octocat"]);
    } finally {
      await api.close();
      await t.cleanup();
    }
  });
});
