import { randomUUID } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { createAgent, type Agent } from "../../agent/agent.ts";
import { loadAgentConfig } from "../../agent/config.ts";
import { createDockerRunner, type DockerRunner } from "../../agent/docker.ts";
import { createAgentMetrics, type AgentMetrics } from "../../agent/metrics.ts";
import { dockerCredentials, type CredentialSource } from "../../agent/prepare/credentials.ts";
import { readRecord, openSpool, publishJob, type DeployJob, type ResultRecord } from "../../spool/index.ts";
import { makeJob } from "./jobs.ts";
import { waitFor } from "./swarm.ts";

export const FIXTURES = path.join(import.meta.dirname, "..", "fixtures");
export const stackFile = (name: string) => path.join(FIXTURES, "stacks", `${name}.yaml`);

export interface LogLine {
  at: number;
  msg: string;
  [k: string]: unknown;
}

export interface TestAgent {
  agent: Agent;
  /** The watcher's Prometheus registry, read in-process. */
  metrics: AgentMetrics;
  logs: LogLine[];
  stop(): Promise<void>;
}

/** A real agent in-process, with the real docker runner, logging into memory (with arrival times). */
export async function startTestAgent(
  spoolDir: string,
  env: Record<string, string>,
  dockerEnv: Record<string, string> = {},
  docker: DockerRunner = createDockerRunner({ env: dockerEnv }),
  deps: { engineLogEveryMs?: number; credentials?: CredentialSource } = {},
): Promise<TestAgent> {
  const config = loadAgentConfig({
    SPOOL_DIR: spoolDir,
    POLL_INTERVAL_MS: "200",
    RETRY_BACKOFF_MS: "100",
    DEPLOY_TIMEOUT_S: "120",
    STATE_DIR: `${spoolDir}.state`, // as tempSpool lays it out (removed with the spool)
    RECONCILE_INTERVAL_S: "0", // the reconcile loop is tested on its own (test/reconcile.test.ts); elsewhere it would deploy tips by itself
    ...env,
  });
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n").filter(Boolean))
        logs.push({ at: Date.now(), ...(JSON.parse(line) as { msg: string }) });
      cb();
    },
  });
  const metrics = createAgentMetrics("test");
  const agent = createAgent({
    config,
    spool: openSpool(spoolDir),
    docker,
    log: pino({ level: "debug" }, sink),
    metrics,
    // registry credentials from the same DOCKER_CONFIG docker is given, as on a node
    credentials: dockerCredentials({ ...process.env, ...dockerEnv }),
    ...deps,
  });
  await agent.start();
  return { agent, metrics, logs, stop: () => agent.stop() };
}

/** Every result record in done/ and failed/, oldest first: the files themselves, not the index. */
export async function readRecords(root: string): Promise<ResultRecord[]> {
  const spool = openSpool(root);
  const paths: string[] = [];
  for (const dir of ["done", "failed"]) {
    for (const name of await readdir(spool.dir(dir as "done"))) if (name.endsWith(".json")) paths.push(`${dir}/${name}`);
  }
  paths.sort((a, b) => a.slice(a.indexOf("/")).localeCompare(b.slice(b.indexOf("/"))));
  const out: ResultRecord[] = [];
  for (const p of paths) {
    const { record, problem } = await readRecord(spool, p);
    if (!record) throw new Error(`${p}: ${problem}`);
    out.push(record);
  }
  return out;
}

/** Wait until the record for `jobId` exists, and return it. */
export async function waitForRecord(root: string, jobId: string, timeoutMs = 120_000): Promise<ResultRecord> {
  return waitFor(`the record of ${jobId}`, async () => (await readRecords(root)).find((r) => r.jobId === jobId), timeoutMs, 250);
}

/** Publish a deploy job for `sha` (a string second argument is its commit date); returns its delivery id. */
export async function publish(root: string, sha: string, o: string | Partial<DeployJob> = {}): Promise<string> {
  const job = makeJob({ sha, deliveryId: randomUUID(), ...(typeof o === "string" ? { committedAt: o } : o) });
  await publishJob(openSpool(root), job);
  return job.deliveryId;
}
