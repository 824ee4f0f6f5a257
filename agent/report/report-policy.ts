import { recordDurationMs, shortSha, type Outcome, type ResultRecord } from "../../spool/index.ts";
import { MAX_DESCRIPTION, type GithubStep, type NotifyMessage } from "./outbox.ts";

/** GitHub's Deployment status for each outcome: a deploy that never ran is `inactive`, not failed. */
export const DEPLOYMENT_STATE: Record<Outcome, "success" | "failure" | "error" | "inactive"> = {
  success: "success",
  failed: "failure",
  rolled_back: "failure",
  invalid: "error",
  blocked: "error",
  superseded: "inactive",
  stale: "inactive",
  planned: "inactive",
};

/** The commit status (what branch protection reads) for each outcome: anything not deployed is not `success`. */
export const COMMIT_STATE: Record<Outcome, "success" | "failure" | "error"> = {
  success: "success",
  failed: "failure",
  rolled_back: "failure",
  invalid: "error",
  blocked: "error",
  superseded: "error",
  stale: "error",
  planned: "error",
};

/** A description GitHub takes: one line, at most 140 characters, an ellipsis where cut. */
export function clip(text: string, max = MAX_DESCRIPTION): string {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`;
}

/** What GitHub hears when a job is claimed: its Deployment is created, queued, and the commit pending. */
export function claimedSteps(kind: "deploy" | "rollback"): GithubStep[] {
  const what = kind === "rollback" ? "rollback" : "deploy";
  return [
    { type: "deployment", description: clip(`swarmhook ${what}`) },
    { type: "deployment_status", state: "queued", description: "queued on the watcher" },
    { type: "commit_status", state: "pending", description: `${what} queued` },
  ];
}

/** While a job waits for its images (IMAGE_WAIT_S): still queued, and the description says for what. */
export const waitingSteps = (images: string[]): GithubStep[] => [
  { type: "deployment_status", state: "queued", description: clip(`waiting for images: ${images.join(", ")}`) },
];

export const startedSteps = (): GithubStep[] => [
  { type: "deployment_status", state: "in_progress", description: "docker stack deploy started" },
];

/** The last two reports of a job: its Deployment's final state and the commit status, with the reason. */
export function finishedSteps(rec: ResultRecord): GithubStep[] {
  const said =
    rec.outcome === "success" ? "deployed and verified" : `${rec.outcome.replace("_", " ")}: ${rec.reason ?? "no reason recorded"}`;
  return [
    { type: "deployment_status", state: DEPLOYMENT_STATE[rec.outcome], description: clip(said) },
    { type: "commit_status", state: COMMIT_STATE[rec.outcome], description: clip(said) },
  ];
}

const FAILURES: ReadonlySet<Outcome> = new Set(["failed", "rolled_back", "invalid", "blocked"]);

/** At most `max` characters of a reason: its start and its end (a failed job's last log lines are at the end). */
const clipMiddle = (text: string, max: number): string =>
  text.length <= max ? text : `${text.slice(0, Math.floor(max / 2) - 1)}…${text.slice(text.length - Math.ceil(max / 2))}`;

/** Two failures are the same when their reasons differ only in commit SHAs, ids and numbers. */
const sameKey = (rec: ResultRecord) => `${rec.outcome}\u0000${(rec.reason ?? "").replace(/\b[0-9a-f]{7,64}\b/g, "#").replace(/\d+/g, "0")}`;

export interface NotifyPolicy {
  /** The messages a finished job sends (none, one, or a recovery after repeats). */
  decide(rec: ResultRecord, url: string | null, now: Date): NotifyMessage[];
}

/**
 * Which outcomes reach the chat. Failures and rollbacks always; successes with NOTIFY_ON=all. The
 * same failure of the same stack again within `repeatMs` is not sent again: it is counted, and the
 * next success sends `recovered` with the count. Kept in memory: a restart forgets the streak.
 * @example
 * const policy = createNotifyPolicy({ on: "failure", repeatMs: 3600_000 });
 * const messages = policy.decide(record, "https://app.example.com/deployments/…", new Date());
 */
export function createNotifyPolicy(o: { on: "failure" | "all"; repeatMs: number }): NotifyPolicy {
  const streaks = new Map<string, { key: string; count: number; since: string; sentAt: number }>();
  return {
    decide(rec, url, now) {
      const job = rec.job;
      const stack = rec.stack ?? "-";
      const message: NotifyMessage = {
        event: job?.kind === "rollback" ? "rollback" : "deploy",
        stack: rec.stack,
        repository: job?.repository ?? null,
        sha: job?.sha ?? null,
        outcome: rec.outcome,
        reason: rec.reason ? clipMiddle(rec.reason, 2000) : null,
        deliveryId: rec.jobId,
        durationMs: recordDurationMs(rec),
        url,
      };
      if (FAILURES.has(rec.outcome)) {
        const key = sameKey(rec);
        const streak = streaks.get(stack);
        if (streak && streak.key === key && now.getTime() - streak.sentAt < o.repeatMs) {
          streak.count += 1;
          return [];
        }
        streaks.set(stack, { key, count: (streak?.count ?? 0) + 1, since: streak?.since ?? rec.timings.finished, sentAt: now.getTime() });
        return [message];
      }
      if (rec.outcome === "success") {
        const streak = streaks.get(stack);
        streaks.delete(stack);
        if (streak) return [{ ...message, event: "recovered", failures: streak.count, since: streak.since }];
        return o.on === "all" || message.event === "rollback" ? [message] : [];
      }
      return o.on === "all" ? [message] : [];
    },
  };
}

/** The one-line summary every chat format starts from. */
export function summary(m: NotifyMessage): string {
  if (m.event === "drift") return `${m.stack}: drifted from the last deploy: ${m.reason ?? "services differ"}`;
  if (m.event === "in_sync")
    return `${m.stack}: in sync with the last deploy again${m.durationMs !== null ? ` after ${lasted(m.durationMs)}` : ""}`;
  if (m.event === "degraded") return `${m.stack}: degraded: ${m.reason ?? "services run fewer tasks than desired"}`;
  if (m.event === "heal_stopped") return `${m.stack}: self-heal stopped: ${m.reason ?? "the drift came back"}`;
  const what = m.event === "rollback" ? "rollback" : "deploy";
  const commit = m.sha ? shortSha(m.sha) : "?";
  if (m.event === "recovered")
    return `${m.stack}: deployed ${commit} again after ${m.failures} failed deploy${m.failures === 1 ? "" : "s"}`;
  if (m.outcome === "success") return `${m.stack}: ${what} of ${commit} succeeded`;
  return `${m.stack ?? "a job"}: ${what} of ${commit} ${m.outcome.replace("_", " ")}${m.reason ? `: ${m.reason}` : ""}`;
}

/** A duration as people say it: 45 s, 12 min, 3 h 5 min, 2 d 4 h. */
export function lasted(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
