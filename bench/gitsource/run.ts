// bench/gitsource: what a stack from git adds to each job — fetch the pushed commit into the mirror,
// check it out, render it, plan it — on a repository with 1,000 commits, as a ratio to the deploy
// itself (`docker stack deploy --detach=false` of that commit, which changes the service, on the real
// one-node swarm). Each round pushes one new commit, so the fetch has real work. Needs
// scripts/test-env.sh's dockerd and swarm. Env: BENCH_COMMITS (1000), BENCH_ROUNDS (7).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { createDockerRunner } from "../../agent/docker.ts";
import { openMirror } from "../../agent/prepare/git.ts";
import { checkout } from "../../agent/prepare/git-stack.ts";
import { planStack } from "../../agent/prepare/plan.ts";
import { deployEnv, renderStack } from "../../agent/prepare/render.ts";
import { ALLOW_ALL } from "../../agent/prepare/stack-policy.ts";
import { JOB_VERSION, type DeployJob } from "../../spool/index.ts";

const COMMITS = Number(process.env.BENCH_COMMITS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const STACK = `benchgit${process.pid}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const stackFile = (n: number) =>
  [
    'version: "3.8"',
    "services:",
    "  web:",
    "    image: swarmhook-test/busybox:latest",
    '    command: ["sleep", "2147483647"]',
    "    env_file: web.env",
    "    deploy: { replicas: 1, update_config: { order: start-first, monitor: 1s } }",
    `# revision ${n}`,
    "",
  ].join("\n");

/** A repository with `n` commits on main, made in one `git fast-import` stream. */
async function makeRepo(dir: string, n: number): Promise<void> {
  await execa("git", ["init", "--quiet", "-b", "main", dir]);
  const parts: string[] = [];
  for (let i = 1; i <= n; i++) {
    const files = [
      ["stack.yaml", stackFile(i)],
      ["web.env", `REVISION=${i}\n`],
    ];
    parts.push(
      `commit refs/heads/main\nmark :${i}\ncommitter bench <bench@example.com> ${1_700_000_000 + i} +0000\ndata 10\nrev ${String(i).padStart(6, "0")}\n`,
    );
    if (i > 1) parts.push(`from :${i - 1}\n`);
    for (const [name, body] of files) parts.push(`M 100644 inline ${name}\ndata ${Buffer.byteLength(body as string)}\n${body}\n`);
  }
  await execa("git", ["-C", dir, "fast-import", "--quiet"], { input: parts.join("") });
  await execa("git", ["-C", dir, "checkout", "--quiet", "main"]);
}

/** The stack the bench deploys from git (a StackConfig as the watcher's configuration makes it). */
function benchStack(repo: string) {
  return {
    name: STACK,
    file: "stack.yaml",
    git: { url: `file://${repo}`, path: "stack.yaml" },
    repository: "bench/repo",
    branches: ["main"],
    tags: [],
    vars: {},
    policy: ALLOW_ALL,
    healthUrl: undefined,
    environment: STACK,
    environmentUrl: undefined,
    productionEnvironment: true,
    reconcile: false,
    selfHeal: false,
    dependsOn: [],
  };
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join("/var/tmp", "swarmhook-bench-git-"));
  const repo = path.join(work, "repo");
  const docker = createDockerRunner();
  try {
    let t = performance.now();
    await makeRepo(repo, COMMITS);
    const count = (await execa("git", ["-C", repo, "rev-list", "--count", "main"])).stdout.trim();
    if (Number(count) !== COMMITS) throw new Error(`the repository has ${count} commits, not ${COMMITS}`);
    console.log(`repository: ${count} commits on main, made in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const stateDir = path.join(work, "state");
    const mirror = await openMirror(stateDir, { url: `file://${repo}`, path: "stack.yaml" });
    t = performance.now();
    await mirror.fetch();
    console.log(`first fetch (the whole history into the mirror): ${(performance.now() - t).toFixed(0)} ms`);
    const git = (...args: string[]) => execa("git", ["-C", repo, ...args]).then((r) => r.stdout.trim());
    await git("config", "user.email", "bench@example.com");
    await git("config", "user.name", "bench");
    const added: number[] = [];
    const deploys: number[] = [];
    for (let r = 0; r < ROUNDS + 1; r++) {
      await writeFile(path.join(repo, "web.env"), `REVISION=push-${r}\n`);
      await git("commit", "--quiet", "-am", `push ${r}`);
      const sha = await git("rev-parse", "HEAD");
      const job: DeployJob = {
        version: JOB_VERSION,
        kind: "deploy",
        deliveryId: `bench-${r}`,
        event: "push",
        repository: "bench/repo",
        ref: "refs/heads/main",
        sha,
        committedAt: new Date().toISOString(),
        sender: "bench",
        receivedAt: new Date().toISOString(),
      };
      const stack = benchStack(repo);
      // what git adds to a job: fetch, branch check, checkout, render, plan
      const a = performance.now();
      await mirror.fetch();
      if (!(await mirror.onBranch(sha, ["main"]))) throw new Error("pushed commit not on main");
      const co = await checkout(stateDir, mirror, stack, job.deliveryId, sha);
      const rendered = await renderStack(docker, co.file, STACK, job, { versionObjects: true });
      await planStack(docker, STACK, rendered.doc, deployEnv(sha));
      const addedMs = performance.now() - a;
      // the deploy itself: docker stack deploy of that commit, which changes the service
      const d = performance.now();
      const res = await docker.run(["stack", "deploy", ...rendered.files.flatMap((f) => ["-c", f]), STACK, "--detach=false"], {
        env: deployEnv(sha),
        timeoutMs: 300_000,
      });
      if (res.exitCode !== 0) throw new Error(`deploy failed: ${res.outputTail}`);
      const deployMs = performance.now() - d;
      await rendered.cleanup();
      await co.cleanup();
      if (r === 0) continue; // the first round creates the service: not a typical deploy
      added.push(addedMs);
      deploys.push(deployMs);
      console.log(`round ${r}: fetch+checkout+render+plan ${addedMs.toFixed(0)} ms, deploy ${deployMs.toFixed(0)} ms`);
    }
    const ratio = median(added) / median(deploys);
    console.log(
      `\nmedian of ${ROUNDS}: git adds ${median(added).toFixed(0)} ms to a ${median(deploys).toFixed(0)} ms deploy = ${ratio.toFixed(2)}x the deploy (${COMMITS} commits)`,
    );
  } finally {
    await execa("docker", ["stack", "rm", STACK], { reject: false });
    await rm(work, { recursive: true, force: true });
  }
}

await main();
