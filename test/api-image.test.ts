// The API image, built from stack/api.Dockerfile as CI's workflow builds it and run on this machine's
// engine: its contents and user are checked on the image itself, not on the Dockerfile's text. No
// registry serves node:* here, so NODE_IMAGE is a Node image made from this machine's node and npm
// (buildNodeImage); the build's npm ci reaches the npm registry over the host's network.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { SECRET, deliver } from "./helpers/api.ts";
import { buildNodeImage } from "./helpers/images.ts";
import { randomSha } from "./helpers/jobs.ts";
import { pushPayload } from "./helpers/payloads.ts";
import { freePort } from "./helpers/postgres.ts";
import { waitFor } from "./helpers/swarm.ts";

const run = promisify(execFile);
const ROOT = path.join(import.meta.dirname, "..");
const docker = (args: string[]) => run("docker", args, { env: { ...process.env, DOCKER_BUILDKIT: "0" }, maxBuffer: 64 * 1024 * 1024 });

describe("the API image (stack/api.Dockerfile, built and run)", () => {
  const tag = `swarmhook-test/api:${randomBytes(6).toString("hex")}`;
  const gitSha = randomSha();
  const names: string[] = [];
  let spool = "";

  before(async () => {
    const base = await buildNodeImage();
    const args = ["build", "--network", "host", "--build-arg", `NODE_IMAGE=${base}`, "--build-arg", `GIT_SHA=${gitSha}`];
    await docker([...args, "-f", "stack/api.Dockerfile", "-t", tag, ROOT]);
    spool = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-image-spool-"));
    await fs.chown(spool, 1011, 1011); // group app owns the spool on every node
  });

  after(async () => {
    for (const name of names) await docker(["rm", "-f", name]).catch(() => undefined);
    await docker(["rmi", "-f", tag]).catch(() => undefined);
    if (spool) await fs.rm(spool, { recursive: true, force: true });
  });

  const sh = async (script: string) => (await docker(["run", "--rm", "--entrypoint", "sh", tag, "-c", script])).stdout;

  it("holds the API's own dependency set and none of the watcher's, and runs as uid 1011", async () => {
    const { stdout } = await docker(["image", "inspect", "-f", "{{.Config.User}}", tag]);
    assert.equal(stdout.trim(), "1011:1011");
    assert.equal((await sh("id -u; id -g")).trim(), "1011\n1011");
    const installed = new Set((await sh("cd /app/node_modules && ls -d * @*/*")).split("\n").filter(Boolean));
    const own = JSON.parse(readFileSync(path.join(ROOT, "api/package.json"), "utf8")) as { dependencies: Record<string, string> };
    for (const dep of Object.keys(own.dependencies)) assert.ok(installed.has(dep), `${dep} installed`);
    const watcherOnly = [...installed].filter((p) => p.startsWith("@octokit/") || p === "execa" || p === "yaml" || p === "typescript");
    assert.deepEqual(watcherOnly, [], "no watcher or build dependency in the image");
    assert.deepEqual((await sh("ls /app/dist")).split("\n").filter(Boolean), ["api", "lib", "spool"]);
  });

  it("answers /health with the commit it was built from, takes a signed push into the spool as uid 1011, and Docker's healthcheck passes", async () => {
    const port = await freePort();
    const name = `swarmhook-api-${randomBytes(4).toString("hex")}`;
    names.push(name);
    const env = {
      SPOOL_DIR: "/spool",
      PORT: String(port),
      HOST: "127.0.0.1",
      GITHUB_WEBHOOK_SECRET: SECRET,
      DEPLOY_REPOSITORY: "acme/app",
    };
    await docker([
      "run",
      "-d",
      "--name",
      name,
      "--network",
      "host",
      "-v",
      `${spool}:/spool`,
      ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
      tag,
    ]);
    const url = `http://127.0.0.1:${port}`;
    const health = await waitFor(
      `${name} answering /health`,
      async () => {
        const res = await fetch(`${url}/health`);
        return res.ok ? ((await res.json()) as Record<string, unknown>) : undefined;
      },
      30_000,
    );
    assert.deepEqual(health, { status: "ok", version: "0.1.0", commit: gitSha });
    const sha = randomSha();
    const r = await deliver(url, {
      event: "push",
      body: JSON.stringify(pushPayload({ ref: "refs/heads/main", after: sha, repository: "acme/app" })),
    });
    assert.equal(r.status, 202, r.text);
    assert.equal(typeof r.json.jobId, "string", r.text);
    const job = path.join(spool, "new", `${String(r.json.jobId)}.json`);
    const st = await fs.stat(job);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [1011, 1011, 0o640]);
    assert.equal((JSON.parse(await fs.readFile(job, "utf8")) as { sha: string }).sha, sha);
    const state = await waitFor(
      `${name} healthy by its own HEALTHCHECK`,
      async () => {
        const { stdout } = await docker(["inspect", "-f", "{{.State.Health.Status}}", name]);
        return stdout.trim() === "healthy" ? stdout.trim() : undefined;
      },
      40_000,
    );
    assert.equal(state, "healthy");
  });
});
