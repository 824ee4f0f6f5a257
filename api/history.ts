import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import {
  recordDurationMs,
  triggerOf,
  type Job,
  type PendingEntry,
  type ResultRecord,
  type SpoolJob,
  type Trigger,
} from "../spool/index.ts";

/** One deployment as the history API and page show it: a pending job or a finished record. */
export interface DeploymentSummary {
  id: string;
  /** `queued` (in new/), `claimed` (in work/: deploying or next), or the record's outcome. */
  status: string;
  stack: string | null;
  kind: Job["kind"] | null;
  trigger: Trigger | null;
  repository: string | null;
  ref: string | null;
  sha: string | null;
  sender: string | null;
  receivedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  reason: string | null;
  /** `done/<name>` or `failed/<name>`; also the `before` cursor of the next page (its name part). */
  record: string | null;
  /** The commit on GitHub, when the job names a real repository. */
  commitUrl: string | null;
}

const MANUAL_REPOSITORY = "manual/deploy";

function fromJob(input: Job | SpoolJob | null) {
  // a pending rollback names only its record: the commit is the watcher's to read from it
  const job = input && "sha" in input ? input : null;
  return {
    kind: input?.kind ?? null,
    trigger: input ? triggerOf(input) : null,
    repository: job?.repository ?? null,
    ref: job?.ref ?? null,
    sha: job?.sha ?? null,
    sender: job?.sender ?? null,
    receivedAt: job?.receivedAt ?? null,
    commitUrl: job && job.repository !== MANUAL_REPOSITORY ? `https://github.com/${job.repository}/commit/${job.sha}` : null,
  };
}

export function summarizePending(p: PendingEntry): DeploymentSummary {
  const stack = p.job?.kind === "rollback" ? p.job.stack : null; // a push's stack is the watcher's to decide
  const status = p.where === "new" ? "queued" : "claimed";
  const reason = p.problem ?? (p.job?.kind === "rollback" ? `rollback to the release of ${p.job.fromRecord}` : null);
  return { id: p.id, status, stack, ...fromJob(p.job), finishedAt: null, durationMs: null, reason, record: null };
}

export function summarizeRecord(path: string, r: ResultRecord | null, problem?: string): DeploymentSummary {
  const base = fromJob(r?.job ?? null);
  return {
    id: r?.jobId ?? path.slice(path.indexOf("/") + 1).replace(/\.json$/, ""),
    status: r?.outcome ?? "unreadable",
    stack: r?.stack ?? null,
    ...base,
    trigger: r?.trigger ?? base.trigger,
    finishedAt: r?.timings.finished ?? null,
    durationMs: r ? recordDurationMs(r) : null,
    reason: r ? (r.reason ?? null) : (problem ?? "unreadable record"),
    record: path,
  };
}

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** The token a request presents: `Authorization: Bearer <token>`, or HTTP Basic with the token as the password. */
function presented(header: string | undefined): string | null {
  if (!header) return null;
  const bearer = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1] ?? null;
  const basic = /^Basic[ ]+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!basic) return null;
  const decoded = Buffer.from(basic[1] ?? "", "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? null : decoded.slice(colon + 1);
}

/**
 * Guard the history: the right token passes (compared in constant time over its hash); anything
 * else gets 401 with a Basic challenge, so a browser asks for it (any user name, the token as the
 * password). Answers carry no-store: the history is nobody's cache's business.
 */
export function requireHistoryToken(
  token: string,
  rejected: (r: { status: number; reason: string; path: string }) => void,
): MiddlewareHandler {
  const want = digest(token);
  return async (c, next) => {
    const given = presented(c.req.header("authorization"));
    c.header("Cache-Control", "no-store");
    if (given === null || !timingSafeEqual(digest(given), want)) {
      rejected({ status: 401, reason: given === null ? "no history token" : "wrong history token", path: c.req.path });
      c.header("WWW-Authenticate", 'Basic realm="swarmhook deployments", charset="UTF-8"');
      const wantsHtml = !c.req.path.startsWith("/api/");
      return wantsHtml
        ? c.html(
            "<!doctype html><title>401</title><p>The deployment history needs the history token (any user name, the token as the password).</p>",
            401,
          )
        : c.json({ error: "the deployment history needs Authorization: Bearer <HISTORY_TOKEN>" }, 401);
    }
    await next();
  };
}
