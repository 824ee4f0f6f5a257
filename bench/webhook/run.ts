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
const SLICE_MS = 1_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
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

interface Measured {
  kind: "swarmhook" | "bare";
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  idle: number;
  after: number;
}

async function stopServer(s: Awaited<ReturnType<typeof startServer>>): Promise<void> {
  s.child.kill("SIGTERM");
  await new Promise((res) => s.child.on("exit", res));
  rmSync(s.spoolDir, { recursive: true, force: true });
}

/**
 * Both servers run side by side, on spools in the same filesystem, and take the load in alternating
 * slices of SLICE_MS: a virtual disk's bursts and slow spells (seen here: 2x from one minute to the
 * next) fall on both alike, which separate runs one after the other cannot promise.
 */
async function compare(label: string, base: string): Promise<void> {
  const servers = { bare: await startServer("bare", base), swarmhook: await startServer("swarmhook", base) };
  await new Promise((r) => setTimeout(r, 500));
  const idle = { bare: rssMb(servers.bare.child.pid as number), swarmhook: rssMb(servers.swarmhook.child.pid as number) };
  const kinds = ["bare", "swarmhook"] as const;
  for (const k of kinds) await load(servers[k].url, WARMUP_MS);
  const got = { bare: { count: 0, errors: 0, latencies: [] as number[] }, swarmhook: { count: 0, errors: 0, latencies: [] as number[] } };
  const slices = Math.max(1, Math.round(DURATION_MS / SLICE_MS)) * ROUNDS;
  for (let i = 0; i < slices; i++) {
    for (const k of i % 2 === 0 ? kinds : ([...kinds].reverse() as (typeof kinds)[number][])) {
      const r = await load(servers[k].url, SLICE_MS);
      got[k].count += r.count;
      got[k].errors += r.errors;
      got[k].latencies.push(...r.latencies);
    }
  }
  const measured = kinds.map((k): Measured => {
    const sorted = got[k].latencies.sort((a, b) => a - b);
    const seconds = (slices * SLICE_MS) / 1000;
    return {
      kind: k,
      rps: got[k].count / seconds,
      p50: pct(sorted, 50),
      p99: pct(sorted, 99),
      errors: got[k].errors,
      idle: idle[k],
      after: rssMb(servers[k].child.pid as number),
    };
  });
  for (const k of kinds) await stopServer(servers[k]);
  const [bare, ours] = measured as [Measured, Measured];
  console.log(`spool on ${label} (${base}):`);
  for (const r of [bare, ours]) {
    console.log(
      `  ${r.kind.padEnd(10)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50.toFixed(1).padStart(6)} ms  p99 ${r.p99.toFixed(1).padStart(6)} ms  errors ${r.errors}  RSS idle ${r.idle.toFixed(0)} MB, after load ${r.after.toFixed(0)} MB`,
    );
  }
  const ratio = ours.rps / bare.rps;
  console.log(`  throughput ratio swarmhook/bare: ${ratio.toFixed(2)}x (target >= 0.90)  ${ratio >= 0.9 ? "OK" : "MISS"}`);
  console.log(
    `  ack p99: ${ours.p99.toFixed(1)} ms (target <= 30)  ${ours.p99 <= 30 ? "OK" : "MISS"}; bare server's p99 ${bare.p99.toFixed(1)} ms`,
  );
  const rss = ours.after / bare.after;
  console.log(
    `  RSS after load swarmhook/bare: ${rss.toFixed(2)}x, ${ours.after.toFixed(0)} vs ${bare.after.toFixed(0)} MB (target <= 1.10)  ${rss <= 1.1 ? "OK" : "MISS"}`,
  );
}

console.log(
  `bench/webhook: ${Buffer.byteLength(body)} B signed push deliveries, ${CONNECTIONS} connections, both servers up side by side, ${(ROUNDS * DURATION_MS) / 1000} s of load each in alternating ${SLICE_MS / 1000} s slices (after ${WARMUP_MS / 1000} s warm-up each)`,
);
// the disk is what production has; tmpfs takes fsync's noise out and leaves the servers' own cost
if (!process.env.BENCH_TMPFS_ONLY) await compare("disk", os.tmpdir());
if (existsSync("/dev/shm") && !process.env.BENCH_DISK_ONLY) await compare("tmpfs", "/dev/shm");
