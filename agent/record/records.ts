import type { Logger } from "pino";
import { finishJob, triggerOf, type Outcome, type ResultRecord, type Spool } from "../../spool/index.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Pending } from "../coalesce.ts";
import type { AgentMetrics } from "../metrics.ts";

/** What a finished job adds to its record beyond the job itself. */
export type RecordExtra = Partial<Omit<ResultRecord, "outcome" | "jobId" | "job" | "timings">> & { started?: Date | null };

export interface Recorder {
  /**
   * Build the record of a finished job, write it (done/ or failed/) and log one line for its outcome.
   * Returns where it was written, or null when the spool refused it (kept for `retry`).
   */
  finish(p: Pending, outcome: Outcome, extra?: RecordExtra): Promise<string | null>;
  /** Write again the records the spool refused earlier; called by every tick. */
  retry(): Promise<void>;
}

const LEVEL: Record<Outcome, "info" | "warn" | "error"> = {
  success: "info",
  superseded: "warn",
  stale: "warn",
  failed: "error",
  rolled_back: "error",
  invalid: "error",
  blocked: "error",
  planned: "info",
};

function count(metrics: AgentMetrics, rec: ResultRecord): void {
  const stack = rec.stack ?? "-";
  metrics.deployments.inc({ stack, outcome: rec.outcome });
  if (rec.timings.started) metrics.duration.observe({ stack }, (Date.parse(rec.timings.finished) - Date.parse(rec.timings.started)) / 1000);
  if (rec.outcome === "success") metrics.lastSuccess.set({ stack }, Date.parse(rec.timings.finished) / 1000);
}

/**
 * Records every outcome. A record the spool cannot take now is kept in `unrecorded` (the job stays in
 * `work/`, deployed again after a restart) and written by the next `retry`.
 * @example
 * const recorder = createRecorder({ spool, log, clock, unrecorded: state.unrecorded });
 * await recorder.finish(pending, "success", { stack: "app", started });
 */
export function createRecorder(deps: {
  spool: Spool;
  log: Logger;
  clock: Clock;
  unrecorded: ResultRecord[];
  metrics: AgentMetrics;
  /** Called once a record is written (the reports); its failure is logged, never the record's. */
  onRecorded?: (rec: ResultRecord) => Promise<void>;
}): Recorder {
  const { spool, log, clock, unrecorded, metrics, onRecorded } = deps;

  async function save(rec: ResultRecord): Promise<string | null> {
    const jobLog = log.child({ jobId: rec.jobId, sha: rec.job?.sha, stack: rec.stack });
    try {
      const where = await finishJob(spool, rec);
      const took = rec.timings.started ? Date.parse(rec.timings.finished) - Date.parse(rec.timings.started) : 0;
      const fields = {
        outcome: rec.outcome,
        reason: rec.reason,
        record: where,
        durationMs: took,
        attempts: rec.attempts.length,
        warnings: rec.warnings,
      };
      jobLog[LEVEL[rec.outcome]]({ ...fields, ...(rec.supersededBy ? { supersededBy: rec.supersededBy } : {}) }, `job ${rec.outcome}`);
      count(metrics, rec);
      await onRecorded?.(rec).catch((err: unknown) => jobLog.error({ err }, "could not report the outcome"));
      return where;
    } catch (err) {
      jobLog.error({ err, outcome: rec.outcome }, "could not record the outcome; will retry");
      metrics.spoolErrors.inc();
      unrecorded.push(rec);
      return null;
    }
  }

  return {
    async finish(p, outcome, extra = {}) {
      const { started, stack, ...rest } = extra;
      const timings = {
        received: p.job.receivedAt,
        claimed: p.claimedAt.toISOString(),
        started: started?.toISOString() ?? null,
        finished: clock.now().toISOString(),
      };
      const base = { outcome, jobId: p.jobId, job: p.job, stack: stack ?? null, timings, trigger: triggerOf(p.job) };
      return save({ ...base, attempts: [], services: [], warnings: [], ...rest });
    },
    async retry() {
      for (const rec of unrecorded.splice(0)) await save(rec);
    },
  };
}
