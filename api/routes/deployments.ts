import { Hono, type Context } from "hono";
import { z } from "zod";
import { describeIssues } from "../../lib/zod.ts";
import {
  RECORD_NAME,
  STACK_NAME,
  findDelivery,
  listPendingJobs,
  listRecords,
  readReconcileStates,
  readProgressOf,
  readRecord,
  type Spool,
} from "../../spool/index.ts";
import { HttpError } from "../errors.ts";
import { summarizePending, summarizeRecord, type DeploymentSummary } from "../history.ts";

export const QuerySchema = z.strictObject({
  stack: z.string().regex(STACK_NAME, "stack must be a stack name").optional(),
  limit: z.coerce.number().int().min(1).max(100, "limit must be 1-100").default(25),
  before: z.string().regex(RECORD_NAME, "before must be the `next` of an earlier page").optional(),
});
export type HistoryQuery = z.infer<typeof QuerySchema>;

/** The query string of a history request, checked; 400 naming the parameter otherwise. */
export function parseQuery(c: Context): HistoryQuery {
  const raw = Object.fromEntries(Object.entries(c.req.query()).filter(([, v]) => v !== ""));
  const parsed = QuerySchema.safeParse(raw);
  if (!parsed.success) throw new HttpError(400, describeIssues(parsed.error));
  return parsed.data;
}

/**
 * One page of history, newest first: on the first page the jobs still pending (a push's stack is
 * known only once the watcher routes it, so a stack filter shows pending rollbacks alone), then
 * `limit` records read through the index. `next` is the cursor of the following page.
 */
export async function loadPage(
  spool: Spool,
  q: HistoryQuery,
): Promise<{ items: DeploymentSummary[]; next: string | null; drift: StackDrift[] }> {
  const pending = q.before ? [] : (await listPendingJobs(spool)).map(summarizePending).filter((s) => !q.stack || s.stack === q.stack);
  const entries = await listRecords(spool, {
    limit: q.limit,
    ...(q.stack ? { stack: q.stack } : {}),
    ...(q.before ? { before: q.before } : {}),
  });
  const last = entries.at(-1);
  const next = entries.length === q.limit && last ? last.path.slice(last.path.indexOf("/") + 1) : null;
  const drift = (await readReconcileStates(spool))
    .filter((r) => r.drift && (!q.stack || r.stack === q.stack))
    .map((r) => ({ stack: r.stack, since: r.drift?.since ?? "", summary: r.drift?.summary ?? "", checkedAt: r.checkedAt }));
  return { items: [...pending, ...entries.map((e) => summarizeRecord(e.path, e.record, e.problem))], next, drift };
}

/** A stack whose running services differ from its last deploy, as the watcher's reconcile loop last found it. */
export interface StackDrift {
  stack: string;
  since: string;
  summary: string;
  checkedAt: string;
}

/**
 * One delivery: its pending job (with the progress of its deploy while it runs: phase, tasks on the
 * new version per service), or its latest record in full (attempts, services, release); null when unknown.
 */
export async function loadOne(spool: Spool, id: string) {
  const found = await findDelivery(spool, id);
  if (!found) return null;
  if ("pending" in found)
    return { deployment: summarizePending(found.pending), job: found.pending.job, record: null, progress: await readProgressOf(spool, id) };
  const { record, problem } = await readRecord(spool, found.record);
  return { deployment: summarizeRecord(found.record, record, problem), job: record?.job ?? null, record, progress: null };
}

/** GET /api/deployments and /api/deployments/:id: the history as JSON (mounted behind the history token). */
export function createDeploymentsRoute(deps: { spool: Spool }): Hono {
  return new Hono()
    .get("/", async (c) => {
      const { items, next, drift } = await loadPage(deps.spool, parseQuery(c));
      return c.json({ deployments: items, next, drift });
    })
    .get("/:id", async (c) => {
      const one = await loadOne(deps.spool, c.req.param("id"));
      if (!one) throw new HttpError(404, "no such deployment");
      return c.json(one);
    });
}
