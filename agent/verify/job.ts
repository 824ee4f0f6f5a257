import type { DockerRunner, RunOptions } from "../docker.ts";
import { query } from "../prepare/index.ts";

/** How many of a failed job's last log lines the record and the chat message carry. */
export const JOB_LOG_LINES = 20;

interface JobService {
  ID: string;
  Spec: {
    Name: string;
    Mode: { ReplicatedJob?: { TotalCompletions?: number; MaxConcurrent?: number }; GlobalJob?: object };
    TaskTemplate: { RestartPolicy?: { Condition?: string; MaxAttempts?: number } };
  };
  JobStatus?: { JobIteration?: { Index?: number } };
}

interface Task {
  ID: string;
  NodeID?: string;
  JobIteration?: { Index?: number };
  DesiredState?: string;
  Status?: { State?: string; Err?: string; ContainerStatus?: { ExitCode?: number } };
}

export type JobVerdict =
  | { status: "completed"; completed: number; total: number }
  | { status: "running"; completed: number; total: number; state: string }
  | { status: "failed"; exitCode: number | null; taskId: string; reason: string; completed: number; total: number };

const FAILED = new Set(["failed", "rejected", "orphaned"]);

/**
 * Judge one run of a job service (the iteration its spec is on now): completed when as many tasks of
 * that iteration completed as it asks (`TotalCompletions`; a global job: one per task it made),
 * failed when more of its tasks failed than its restart policy retries (`condition: none`, or the
 * compose default `any` with no `max_attempts`: the first failure), else running.
 */
export async function judgeJob(docker: DockerRunner, service: string, env?: RunOptions["env"]): Promise<JobVerdict> {
  const [s] = JSON.parse(await query(docker, ["service", "inspect", service], env)) as JobService[];
  if (!s) throw new Error(`service ${service} not found`);
  const iteration = s.JobStatus?.JobIteration?.Index ?? 0;
  const ids = (await query(docker, ["service", "ps", s.ID, "-q", "--no-trunc"], env)).split("\n").filter(Boolean);
  const tasks = (ids.length > 0 ? (JSON.parse(await query(docker, ["inspect", "--type", "task", ...ids], env)) as Task[]) : []).filter(
    (t) => (t.JobIteration?.Index ?? 0) === iteration,
  );
  const completed = tasks.filter((t) => t.Status?.State === "complete").length;
  const total = s.Spec.Mode.ReplicatedJob
    ? (s.Spec.Mode.ReplicatedJob.TotalCompletions ?? s.Spec.Mode.ReplicatedJob.MaxConcurrent ?? 1)
    : Math.max(1, new Set(tasks.map((t) => t.NodeID)).size);
  if (completed >= total) return { status: "completed", completed, total };
  const failed = tasks.filter((t) => FAILED.has(t.Status?.State ?? ""));
  const policy = s.Spec.TaskTemplate.RestartPolicy;
  const retries = policy?.Condition === "none" || !policy?.MaxAttempts ? 0 : policy.MaxAttempts;
  const last = failed[0]; // docker lists the newest task first
  if (last && failed.length > retries) {
    const exitCode = last.Status?.ContainerStatus?.ExitCode ?? null;
    const said = exitCode === null ? (last.Status?.Err ?? last.Status?.State ?? "failed") : `exit code ${exitCode}`;
    return { status: "failed", exitCode, taskId: last.ID, reason: said, completed, total };
  }
  const state = tasks[0]?.Status?.State ?? "pending";
  return { status: "running", completed, total, state };
}

/** Control characters and terminal escapes out of a log line (a job's output is not ours to trust). */
export const cleanLogLine = (line: string): string =>
  line
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "")
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, "")
    .slice(0, 500);

/** The last JOB_LOG_LINES lines a job's task wrote (stdout and stderr), cleaned; empty when the logs cannot be read. */
export async function jobLogTail(docker: DockerRunner, taskId: string, env?: RunOptions["env"]): Promise<string[]> {
  const r = await docker.capture(["service", "logs", "--raw", "--no-trunc", "--tail", String(JOB_LOG_LINES), taskId], {
    env,
    timeoutMs: 30_000,
  });
  if (r.exitCode !== 0) return [];
  return r.outputTail
    .split("\n")
    .map(cleanLogLine)
    .filter((l) => l.trim() !== "")
    .slice(-JOB_LOG_LINES);
}
