// bench/reconcile: what the reconcile loop costs when there is nothing to do. 20 stacks from one git
// repository (one branch each), deployed and in sync on the one-node swarm; the same watcher process
// runs two minutes with reconcile off (the baseline: polling, engine checks) and two minutes reconciling
// every 10 s, in one run. Its CPU (its own and its children's: docker and git) and RSS are read from /proc.
// Run as: npm run bench:reconcile (builds first; needs scripts/test-env.sh's dockerd, swarm and images).
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ensureSpool, openSpool, readDeployed } from "../../spool/index.ts";
import { buildWebImage } from "../../test/helpers/images.ts";

const run = promisify(execFile);
const ROOT = path.join(import.meta.dirname, "..", "..", "..");
const STACKS = Number(process.env.BENCH_STACKS ?? 20);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 120);
const INTERVAL_S = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const names = Array.from({ length: STACKS }, (_, i) => `benchrc${i}`);

/** A repository with the stack file on `main` and one branch per stack at the same commit; returns its commit. */
async function makeRepo(dir: string): Promise<string> {
  const git = (...args: string[]) => run("git", args, { cwd: dir }).then((r) => r.stdout.trim());
  await git("init", "--quiet", "-b", "main");
  await git("config", "user.email", "bench@example.com");
  await git("config", "user.name", "bench");
  writeFileSync(
    path.join(dir, "stack.yaml"),
    [
      'version: "3.8"',
      "services:",
      "  web:",
      "    image: swarmhook-test/web:${IMAGE_TAG:?set by the watcher}",
      "    environment: { GREETING: bench }",
      "    deploy:",
      "      replicas: 1",
      "      endpoint_mode: dnsrr",
      "      update_config: { parallelism: 1, delay: 0s, order: start-first }",
      "",
    ].join("\n"),
  );
  await git("add", "-A");
  await git("commit", "--quiet", "-m", "bench");
  const sha = await git("rev-parse", "HEAD");
  for (const n of names) await git("branch", n);
  return sha;
}

function watcher(env: Record<string, string>) {
  return spawn(process.execPath, [path.join(ROOT, "dist", "agent", "main.js")], {
    env: { PATH: process.env.PATH ?? "", HOME: os.tmpdir(), LOG_LEVEL: "warn", POLL_INTERVAL_MS: "1000", ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });
}

/** CPU seconds of the process and of the children it waited for (docker, git), and its RSS in MB. */
function usage(pid: number): { cpuS: number; rssMb: number } {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]); // utime stime cutime cstime
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return { cpuS: ticks / 100, rssMb: Number(rss?.[1]) / 1024 };
}

/** Seconds after the start when the steady share is measured from (the first pass, which renders every release, is over). */
const WARM_S = 40;

/**
 * One watcher for SECONDS: its CPU share (% of one core, children included) over the whole run and
 * after its first WARM_S seconds, its peak RSS and its RSS at the end.
 */
async function measure(env: Record<string, string>) {
  const child = watcher(env);
  const pid = child.pid as number;
  const u0 = usage(pid);
  const t0 = performance.now();
  let peak = u0.rssMb;
  let warm: { cpuS: number; at: number } | undefined;
  while (performance.now() - t0 < SECONDS * 1000) {
    await sleep(1000);
    const u = usage(pid);
    peak = Math.max(peak, u.rssMb);
    if (!warm && performance.now() - t0 >= WARM_S * 1000) warm = { cpuS: u.cpuS, at: performance.now() };
  }
  const u1 = usage(pid);
  const now = performance.now();
  const cpuPct = ((u1.cpuS - u0.cpuS) / ((now - t0) / 1000)) * 100;
  const steadyPct = warm ? ((u1.cpuS - warm.cpuS) / ((now - warm.at) / 1000)) * 100 : NaN;
  child.kill("SIGTERM");
  await new Promise((r) => child.on("exit", r));
  return { cpuPct, steadyPct, rssMb: peak, endRssMb: u1.rssMb };
}

const work = mkdtempSync(path.join(os.tmpdir(), "swarmhook-bench-reconcile-"));
const repo = path.join(work, "repo");
const spoolDir = path.join(work, "spool");
const stateDir = path.join(work, "state");
for (const d of [repo, spoolDir, stateDir]) rmSync(d, { recursive: true, force: true });
await run("mkdir", ["-p", repo, spoolDir, stateDir]);
const sha = await makeRepo(repo);
await buildWebImage(sha);
await ensureSpool(openSpool(spoolDir));
const config = path.join(work, "stacks.yaml");
writeFileSync(
  config,
  `stacks:\n${names.map((n) => `  - { name: ${n}, repository: bench/app, branches: [${n}], git: { url: "file://${repo}", path: stack.yaml } }\n`).join("")}`,
);
const env = { SPOOL_DIR: spoolDir, STATE_DIR: stateDir, AGENT_CONFIG: config };
try {
  // the loop itself deploys every stack's tip (no webhook): then all are deployed by the watcher and in sync
  const setup = watcher({ ...env, RECONCILE_INTERVAL_S: "5" });
  const started = performance.now();
  const spool = openSpool(spoolDir);
  for (;;) {
    const done = await Promise.all(names.map(async (n) => (await readDeployed(spool, n)).deployed?.sha === sha));
    if (done.every(Boolean)) break;
    if (performance.now() - started > 900_000) throw new Error("the 20 stacks were not deployed within 15 minutes");
    await sleep(2000);
  }
  setup.kill("SIGTERM");
  await new Promise((r) => setup.on("exit", r));
  console.log(`setup: ${STACKS} stacks deployed by the loop in ${((performance.now() - started) / 1000).toFixed(0)} s`);

  const off = await measure({ ...env, RECONCILE_INTERVAL_S: "0" });
  const on = await measure({ ...env, RECONCILE_INTERVAL_S: String(INTERVAL_S) });
  const extra = on.cpuPct - off.cpuPct;
  const steady = on.steadyPct - off.steadyPct;
  const ok = (b: boolean) => (b ? "OK" : "MISS");
  const said = (r: typeof on) =>
    `CPU ${r.cpuPct.toFixed(2)} % of a core (after ${WARM_S} s: ${r.steadyPct.toFixed(2)} %), RSS peak ${r.rssMb.toFixed(0)} MB, at the end ${r.endRssMb.toFixed(0)} MB`;
  console.log(`reconcile off (baseline), ${SECONDS} s: ${said(off)}`);
  console.log(`reconcile every ${INTERVAL_S} s over ${STACKS} stacks, ${SECONDS} s: ${said(on)}`);
  console.log(
    `reconcile costs ${extra.toFixed(2)} % of a core more over ${SECONDS} s (target <= 2)  ${ok(extra <= 2)}; ${steady.toFixed(2)} % once every release is rendered (after ${WARM_S} s); peak RSS ${on.rssMb.toFixed(0)} MB (target < 100)  ${ok(on.rssMb < 100)}`,
  );
  const drifted = readFileSync(path.join(spoolDir, "state", `_reconcile.${names[0]}.json`), "utf8");
  if (!drifted.includes('"drift":null')) console.log(`note: ${names[0]} was not in sync: ${drifted}`);
} finally {
  for (const n of names) await run("docker", ["stack", "rm", n]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
