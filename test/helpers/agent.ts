import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { createAgent, type Agent } from "../../agent/agent.ts";
import { loadAgentConfig } from "../../agent/config.ts";
import { createDockerRunner } from "../../agent/docker.ts";
import { ResultRecordSchema, openSpool, publishJob, type ResultRecord } from "../../spool/index.ts";
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
  logs: LogLine[];
  stop(): Promise<void>;
}

/** A real agent in-process, with the real docker runner, logging into memory (with arrival times). */
export async function startTestAgent(spoolDir: string, env: Record<string, string>, dockerEnv: Record<string, string> = {}): Promise<TestAgent> {
  const config = loadAgentConfig({ SPOOL_DIR: spoolDir, POLL_INTERVAL_MS: "200", RETRY_BACKOFF_MS: "100", DEPLOY_TIMEOUT_S: "120", ...env });
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) logs.push({ at: Date.now(), ...(JSON.parse(line) as { msg: string }) });
      cb();
    },
  });
  const agent = createAgent({ config, spool: openSpool(spoolDir), docker: createDockerRunner({ env: dockerEnv }), log: pino({ level: "debug" }, sink) });
  await agent.start();
  return { agent, logs, stop: () => agent.stop() };
}

/** Every result record in done/ and failed/, oldest first. */
export async function readRecords(root: string): Promise<ResultRecord[]> {
  const out: { name: string; rec: ResultRecord }[] = [];
  for (const dir of ["done", "failed"]) {
    for (const name of await fs.readdir(path.join(root, dir))) {
      if (!name.endsWith(".json")) continue;
      out.push({ name, rec: ResultRecordSchema.parse(JSON.parse(await fs.readFile(path.join(root, dir, name), "utf8"))) });
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name)).map((x) => x.rec);
}

/** Wait until the record for `jobId` exists, and return it. */
export async function waitForRecord(root: string, jobId: string, timeoutMs = 120_000): Promise<ResultRecord> {
  return waitFor(`the record of ${jobId}`, async () => (await readRecords(root)).find((r) => r.jobId === jobId), timeoutMs, 250);
}

/** Publish a deploy job for `sha`, committed at `committedAt`. */
export async function publish(root: string, sha: string, committedAt = new Date().toISOString()): Promise<string> {
  const job = makeJob({ sha, committedAt, deliveryId: randomUUID() });
  await publishJob(openSpool(root), job);
  return job.deliveryId;
}
