import type { Logger } from "pino";
import type { Clock } from "../lib/clock.ts";
import { readDeployed, shortSha, writeDeployed, type Spool } from "../spool/index.ts";
import { coalesce } from "./coalesce.ts";
import type { AgentConfig } from "./config.ts";
import { deployJob } from "./deploy.ts";
import type { DockerRunner } from "./docker.ts";
import type { AgentMetrics } from "./metrics.ts";
import type { Recorder } from "./records.ts";
import type { StackRuntime } from "./state.ts";

/** What one stack's deploy loop needs; built once by createAgent. */
export interface StackContext {
  config: Readonly<AgentConfig>;
  spool: Spool;
  docker: DockerRunner;
  log: Logger;
  clock: Clock;
  recorder: Recorder;
  metrics: AgentMetrics;
}

/**
 * Take every job pending for `stack`, decide (coalesce: deploy the newest received, supersede the
 * rest, refuse what the branch moved past), record the losers, deploy the winner and record it.
 */
export async function runStack(ctx: StackContext, stack: StackRuntime): Promise<void> {
  const { spool, log, recorder, clock } = ctx;
  const name = stack.config.name;
  const batch = stack.pending.splice(0);
  if (batch.length === 0) return;
  const { deployed, problem } = await readDeployed(spool, name).catch((err: unknown) => {
    stack.pending.unshift(...batch); // the spool failed us: the jobs wait in work/ for the next tick
    throw err;
  });
  if (problem) log.warn({ stack: name }, problem);
  const decision = coalesce(batch, deployed);
  for (const { pending, reason } of decision.stale) await recorder.finish(pending, "stale", { stack: name, reason });
  for (const { pending, by } of decision.superseded) {
    await recorder.finish(pending, "superseded", {
      stack: name,
      supersededBy: by.jobId,
      reason: `a newer delivery (${shortSha(by.job.sha)}) was pending`,
    });
  }
  const winner = decision.deploy;
  const remember = (sha: string, jobId: string) =>
    writeDeployed(spool, { stack: name, sha, jobId, finishedAt: clock.now().toISOString(), moves: decision.moves }).catch((err: unknown) =>
      log.error({ err, stack: name }, "could not write state/; stale detection may miss this deploy"),
    );
  if (!winner) {
    if (deployed) await remember(deployed.sha, deployed.jobId);
    return;
  }
  const started = clock.now();
  const jobLog = log.child({ jobId: winner.jobId, deliveryId: winner.job.deliveryId, sha: winner.job.sha, stack: name });
  const result = await deployJob({ docker: ctx.docker, log: jobLog, policy: ctx.config, stack: stack.config, job: winner.job, clock });
  if (result.outcome === "success") await remember(winner.job.sha, winner.jobId);
  else if (deployed) await remember(deployed.sha, deployed.jobId);
  const { attempts, services, warnings } = result;
  await recorder.finish(winner, result.outcome, {
    stack: name,
    started,
    attempts,
    services,
    warnings,
    ...(result.reason ? { reason: result.reason } : {}),
  });
}
