// bench/webhook: throughput, ack latency and RSS of the API vs a bare node:http baseline, in one run.
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import http from "node:http";
import { pushPayload } from "../../test/helpers/payloads.ts";
import { freePort } from "../../test/helpers/postgres.ts";

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 8_000);
const WARMUP_MS = 2_000;
const CONNECTIONS = 50;
const SECRET = randomBytes(32).toString("hex");
// the compiled servers, as production runs them: run this as dist/bench/webhook/run.js (npm run bench:webhook)
const root = path.join(import.meta.dirname, "..", "..", "..");

const payload = pushPayload({ ref: "refs/heads/main", after: randomBytes(20).toString("hex"), repository: "acme/app" });
const body = JSON.stringify(payload);
const signature = `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function startServer(kind: "swarmhook" | "bare", base: string): Promise<{ child: ChildProcess; url: string; spoolDir: string }> {
  const spoolDir = mkdtempSync(path.join(base, `swarmhook-bench-${kind}-`));
  const port = await freePort();
  const child =
    kind === "swarmhook"
      ? spawn(
          process.execPath,
          [...(process.env.API_NODE_FLAGS ?? "").split(" ").filter(Boolean), path.join(root, "dist", "api", "main.js")],
          {
            env: {
              PATH: process.env.PATH ?? "",
              SPOOL_DIR: spoolDir,
              GITHUB_WEBHOOK_SECRET: SECRET,
              PORT: String(port),
              HOST: "127.0.0.1",
              DEPLOY_REPOSITORY: "acme/app",
              LOG_LEVEL: "warn",
            },
            stdio: ["ignore", "pipe", "inherit"],
          },
        )
      : spawn(process.execPath, [path.join(root, "dist", "bench", "webhook", "bare-server.js"), spoolDir, SECRET, String(port)], {
          stdio: ["ignore", "pipe", "inherit"],
        });
  const url = `http://127.0.0.1:${port}/api/webhook/github`;
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(url.replace("/api/webhook/github", "/health"));
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { child, url, spoolDir };
}

function post(url: URL, agent: http.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "x-github-event": "push",
          "x-github-delivery": randomUUID(),
          "x-hub-signature-256": signature,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function load(url: string, ms: number): Promise<{ count: number; errors: number; latencies: number[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const target = new URL(url);
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + ms;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          if ((await post(target, agent)) !== 202) errors++;
        } catch {
          errors++;
        }
        latencies.push(performance.now() - t0);
      }
    }),
  );
  agent.destroy();
  return { count: latencies.length, errors, latencies };
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function measure(kind: "swarmhook" | "bare", base: string) {
  const s = await startServer(kind, base);
  await new Promise((r) => setTimeout(r, 500));
  const idle = rssMb(s.child.pid as number);
  await load(s.url, WARMUP_MS);
  const r = await load(s.url, DURATION_MS);
  if (process.env.BENCH_VERBOSE) console.log(`  ${kind}: ${(r.count / (DURATION_MS / 1000)).toFixed(0)} req/s`);
  const after = rssMb(s.child.pid as number);
  s.child.kill("SIGTERM");
  await new Promise((res) => s.child.on("exit", res));
  rmSync(s.spoolDir, { recursive: true, force: true });
  const sorted = r.latencies.sort((a, b) => a - b);
  return { kind, rps: r.count / (DURATION_MS / 1000), p50: pct(sorted, 50), p99: pct(sorted, 99), errors: r.errors, idle, after };
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
type M = Awaited<ReturnType<typeof measure>>;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const combine = (ms: M[]): M => ({
  kind: ms[0]?.kind ?? "bare",
  rps: median(ms.map((m) => m.rps)),
  p50: median(ms.map((m) => m.p50)),
  p99: median(ms.map((m) => m.p99)),
  errors: ms.reduce((n, m) => n + m.errors, 0),
  idle: median(ms.map((m) => m.idle)),
  after: Math.max(...ms.map((m) => m.after)),
});

async function compare(label: string, base: string): Promise<void> {
  const rounds: { bare: M; ours: M }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    // alternate which goes first, so drift in the disk's fsync latency hits both alike
    if (i % 2 === 0) rounds.push({ bare: await measure("bare", base), ours: await measure("swarmhook", base) });
    else {
      const ours = await measure("swarmhook", base);
      rounds.push({ bare: await measure("bare", base), ours });
    }
  }
  const bare = combine(rounds.map((r) => r.bare));
  const ours = combine(rounds.map((r) => r.ours));
  console.log(`spool on ${label} (${base}):`);
  for (const r of [bare, ours]) {
    console.log(
      `  ${r.kind.padEnd(10)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50.toFixed(1).padStart(6)} ms  p99 ${r.p99.toFixed(1).padStart(6)} ms  errors ${r.errors}  RSS idle ${r.idle.toFixed(0)} MB, after load (max) ${r.after.toFixed(0)} MB`,
    );
  }
  const ratio = ours.rps / bare.rps;
  console.log(`  throughput ratio swarmhook/bare: ${ratio.toFixed(2)}x (target >= 0.90)  ${ratio >= 0.9 ? "OK" : "MISS"}`);
  console.log(
    `  ack p99: ${ours.p99.toFixed(1)} ms (target <= 30)  ${ours.p99 <= 30 ? "OK" : "MISS"}; bare server's p99 ${bare.p99.toFixed(1)} ms`,
  );
  console.log(`  RSS after load: ${ours.after.toFixed(0)} MB (target < 100)  ${ours.after < 100 ? "OK" : "MISS"}`);
}

console.log(
  `bench/webhook: ${Buffer.byteLength(body)} B signed push deliveries, ${CONNECTIONS} connections, ${ROUNDS} alternating rounds of ${DURATION_MS / 1000} s per server (after ${WARMUP_MS / 1000} s warm-up); medians`,
);
// the disk is what production has; tmpfs takes fsync's noise out and leaves the servers' own cost
if (!process.env.BENCH_TMPFS_ONLY) await compare("disk", os.tmpdir());
if (existsSync("/dev/shm")) await compare("tmpfs", "/dev/shm");
