// bench/pickup: pickup latency through a bindfs mount, agent overhead vs docker by hand, idle cost.
// Run as: npm run bench:pickup (builds first; needs scripts/test-env.sh's dockerd, swarm and images).
import { execFile, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { pino } from "pino";
import { createAgent } from "../../agent/agent.ts";
import { loadAgentConfig } from "../../agent/config.ts";
import { createDockerRunner, type DockerRunner } from "../../agent/docker.ts";
import { JOB_VERSION, ensureSpool, openSpool, publishJob, type DeployJob } from "../../spool/index.ts";
import { mountBindfs } from "../../test/helpers/bindfs.ts";
import { buildWebImage } from "../../test/helpers/images.ts";

const run = promisify(execFile);
const ROOT = path.join(import.meta.dirname, "..", "..", "..");
const STACK = path.join(ROOT, "test", "fixtures", "stacks", "web.yaml");
const POLL = 1000;
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 40);
const silent = pino({ level: "silent" });
const sha = () => randomBytes(20).toString("hex");
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function job(s: string, committedAt = new Date().toISOString()): DeployJob {
  const now = new Date().toISOString();
  return {
    version: JOB_VERSION,
    kind: "deploy",
    deliveryId: randomUUID(),
    event: "push",
    repository: "acme/app",
    ref: "refs/heads/main",
    sha: s,
    committedAt,
    sender: "bench",
    receivedAt: now,
  };
}

/** 1. job published underneath a bindfs mount → `docker stack deploy` started by the agent reading the mount (after it rendered and planned the stack). */
async function pickup(): Promise<number[]> {
  const under = mkdtempSync(path.join(os.tmpdir(), "swarmhook-bench-nfs-"));
  await ensureSpool(openSpool(under));
  const mount = await mountBindfs(under);
  const started = new Map<string, number>();
  // `docker stack deploy` stubbed: this measures pickup (claim, engine check, render, plan), not the deploy;
  // the queries before it (version, info, stack config, services) go to the real engine
  const real = createDockerRunner();
  const docker: DockerRunner = {
    run: async (args, o) => {
      started.set(o?.env?.DEPLOY_SHA ?? "", performance.now());
      return { command: ["docker", ...args], exitCode: 1, timedOut: false, durationMs: 0, outputTail: "stub", stdout: "" };
    },
    capture: (args, o) => real.capture(args, o),
  };
  const config = loadAgentConfig({
    SPOOL_DIR: mount.mountpoint,
    STACK_FILE: STACK,
    STACK_NAME: "bench",
    POLL_INTERVAL_MS: String(POLL),
    DEPLOY_RETRIES: "0",
  });
  const agent = createAgent({ config, spool: openSpool(mount.mountpoint), docker, log: silent });
  await agent.start();
  const delays: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    await sleep(Math.random() * POLL);
    const s = sha();
    const t0 = performance.now();
    await publishJob(openSpool(under), job(s));
    while (!started.has(s)) await sleep(2);
    delays.push((started.get(s) as number) - t0);
  }
  await agent.stop();
  await mount.unmount();
  rmSync(under, { recursive: true, force: true });
  return delays;
}

/** 2. a no-change deploy: through the agent vs the same commands by hand. */
async function overhead(): Promise<{ agentMs: number[]; handMs: number[] }> {
  const s = sha();
  await buildWebImage(s);
  const stack = `shbench-${randomBytes(2).toString("hex")}`;
  const env = { ...process.env, IMAGE_TAG: s, DEPLOY_SHA: s };
  await run("docker", ["stack", "deploy", "-c", STACK, stack, "--with-registry-auth", "--detach=false"], { env });
  const dir = mkdtempSync(path.join(os.tmpdir(), "swarmhook-bench-spool-"));
  const spool = openSpool(dir);
  await ensureSpool(spool);
  const config = loadAgentConfig({ SPOOL_DIR: dir, STACK_FILE: STACK, STACK_NAME: stack, POLL_INTERVAL_MS: "50" });
  const records = () => run("sh", ["-c", `ls ${dir}/done ${dir}/failed | grep -c json || true`]).then((r) => Number(r.stdout.trim()));
  const agent = createAgent({ config, spool, docker: createDockerRunner(), log: silent });
  await agent.start();
  const agentMs: number[] = [];
  const handMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    // by hand: the deploy, then the inspection the agent does
    let t0 = performance.now();
    await run("docker", ["stack", "deploy", "-c", STACK, stack, "--with-registry-auth", "--detach=false"], { env });
    await run("docker", ["stack", "config", "-c", STACK], { env });
    const ids = (await run("docker", ["stack", "services", stack, "--format", "{{.ID}}"])).stdout.trim().split("\n");
    await run("docker", ["service", "inspect", ...ids]);
    for (const id of ids)
      await run("docker", ["service", "ps", id, "--filter", "desired-state=running", "--no-trunc", "--format", "{{json .}}"]);
    handMs.push(performance.now() - t0);
    // through the agent: publish → record written
    const before = await records();
    t0 = performance.now();
    await publishJob(spool, job(s));
    while ((await records()) === before) await sleep(20);
    agentMs.push(performance.now() - t0);
  }
  await agent.stop();
  await run("docker", ["stack", "rm", stack]);
  rmSync(dir, { recursive: true, force: true });
  return { agentMs, handMs };
}

/** 3. the agent process idle on a spool whose done/ holds 10,000 records. */
async function idle(): Promise<{ rssMb: number; cpuPct: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "swarmhook-bench-idle-"));
  await ensureSpool(openSpool(dir));
  const record = readFileSync(path.join(ROOT, "package.json"), "utf8"); // any few-KB file stands for a record
  for (let i = 0; i < 10_000; i++)
    writeFileSync(path.join(dir, "done", `20261124T000000${String(i).padStart(4, "0")}Z-bench-${i}.json`), record);
  const child = spawn(process.execPath, [path.join(ROOT, "dist", "agent", "main.js")], {
    env: { PATH: process.env.PATH ?? "", SPOOL_DIR: dir, STACK_FILE: STACK, STACK_NAME: "bench", LOG_LEVEL: "warn" },
    stdio: "ignore",
  });
  await sleep(3000);
  const ticks = () => {
    const f = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks
  };
  const c0 = ticks();
  const t0 = performance.now();
  await sleep(10_000);
  const cpuPct = ((ticks() - c0) / 100 / ((performance.now() - t0) / 1000)) * 100;
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
  child.kill("SIGTERM");
  await new Promise((r) => child.on("exit", r));
  rmSync(dir, { recursive: true, force: true });
  return { rssMb: Number(rss?.[1]) / 1024, cpuPct };
}

const ok = (b: boolean) => (b ? "OK" : "MISS");
const p = await pickup();
console.log(
  `pickup through bindfs, poll ${POLL} ms, ${SAMPLES} jobs: p50 ${pct(p, 50).toFixed(0)} ms, p99 ${pct(p, 99).toFixed(0)} ms (target p99 <= ${POLL + 250})  ${ok(pct(p, 99) <= POLL + 250)}`,
);
const o = await overhead();
const ratio = pct(o.agentMs, 50) / pct(o.handMs, 50);
console.log(
  `no-change deploy, median of 5: agent ${pct(o.agentMs, 50).toFixed(0)} ms, by hand ${pct(o.handMs, 50).toFixed(0)} ms, ratio ${ratio.toFixed(2)}x (target <= 1.15)  ${ok(ratio <= 1.15)}`,
);
const i = await idle();
console.log(
  `idle with 10,000 records in done/: RSS ${i.rssMb.toFixed(0)} MB (target < 80)  ${ok(i.rssMb < 80)}, CPU ${i.cpuPct.toFixed(2)} % of a core (target < 1)  ${ok(i.cpuPct < 1)}`,
);
