// bench/history: what one page of the deployment history costs as the history grows. The same app,
// the same request (GET /api/deployments?limit=25 with the token, in-process), against spools on disk
// holding SMALL and LARGE records, interleaved round by round; ratio large/small. Then the same
// requests with index/records.log moved aside, so the page is found by listing done/ and failed/
// (what a reader without the index must do), to show what the index saves. Env: BENCH_SMALL (100), BENCH_LARGE (10000), BENCH_ROUNDS (7), BENCH_REQUESTS (50).
import { mkdtemp, rename, rm } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import { createApp } from "../../api/app.ts";
import { createClientAddress } from "../../api/client-address.ts";
import { loadApiConfig } from "../../api/config.ts";
import { ensureSpool, openSpool, type Spool } from "../../spool/index.ts";
import { fillHistory } from "../../test/helpers/history.ts";

const SMALL = Number(process.env.BENCH_SMALL ?? 100);
const LARGE = Number(process.env.BENCH_LARGE ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 50);
const TOKEN = "bench-history-token-0123456789abcdef-01234";
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function makeSpool(n: number): Promise<{ spool: Spool; dir: string }> {
  // on the disk, like the spool's NFS export on kvm8 (not tmpfs)
  const dir = await mkdtemp(path.join(process.env.BENCH_DIR ?? "/var/tmp", "swarmhook-bench-history-"));
  const spool = openSpool(dir);
  await ensureSpool(spool);
  const t = performance.now();
  await fillHistory(spool, n, { stacks: ["app", "web", "db"], failEvery: 9 });
  console.log(`history: ${n} records laid and indexed in ${((performance.now() - t) / 1000).toFixed(1)} s (${dir})`);
  return { spool, dir };
}

function pageVia(spool: Spool): () => Promise<void> {
  const config = loadApiConfig({ SPOOL_DIR: spool.root, GITHUB_WEBHOOK_SECRET: TOKEN, HISTORY_TOKEN: TOKEN });
  const app = createApp({
    config,
    spool,
    log: pino({ level: "silent" }),
    visits: undefined,
    clientAddress: createClientAddress([]),
    version: "bench",
  });
  return async () => {
    const res = await app.request("/api/deployments?limit=25", { headers: { authorization: `Bearer ${TOKEN}` } });
    const body = (await res.json()) as { deployments: unknown[] };
    if (res.status !== 200 || body.deployments.length !== 25) throw new Error(`bad page: ${res.status}`);
  };
}

async function timeMs(fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < REQUESTS; i++) await fn();
  return (performance.now() - t) / REQUESTS;
}

async function main(): Promise<void> {
  const small = await makeSpool(SMALL);
  const large = await makeSpool(LARGE);
  try {
    const indexed = { small: pageVia(small.spool), large: pageVia(large.spool) };
    const t = { small: [] as number[], large: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of r % 2 === 0 ? (["small", "large"] as const) : (["large", "small"] as const)) t[k].push(await timeMs(indexed[k]));
    }
    // the same page without the index: the index file moved aside, as on a spool that never had one
    const listed = { small: [] as number[], large: [] as number[] };
    for (const s of [small, large]) await rename(s.spool.file("index", "records.log"), path.join(s.dir, "records.log.aside"));
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of r % 2 === 0 ? (["small", "large"] as const) : (["large", "small"] as const)) listed[k].push(await timeMs(indexed[k]));
    }
    const row = (what: string, xs: { small: number[]; large: number[] }) =>
      console.log(
        `${what.padEnd(34)} ${median(xs.small).toFixed(2).padStart(8)} ms ${median(xs.large).toFixed(2).padStart(8)} ms   ratio ${(median(xs.large) / median(xs.small)).toFixed(2)}x`,
      );
    console.log(`\nnewest 25 records, median of ${ROUNDS} rounds x ${REQUESTS} requests     ${SMALL} records  ${LARGE} records`);
    row("GET /api/deployments (index)", t);
    row("the same without the index", listed);
    console.log(
      `\nthe index keeps a page's cost flat: ${(median(t.large) / median(t.small)).toFixed(2)}x for ${LARGE / SMALL}x the history`,
    );
  } finally {
    await rm(small.dir, { recursive: true, force: true });
    await rm(large.dir, { recursive: true, force: true });
  }
}

await main();
