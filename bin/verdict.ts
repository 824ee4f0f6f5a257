// Waiting for a deploy's verified outcome through the API's history (`send --wait`), and what each
// outcome means as an exit status (shared with every command that waits for one).

/** The exit status an outcome means: 0 it runs (or was planned), 1 it did not, 3 another delivery decided. */
export function exitCodeOf(status: string): number {
  if (status === "success" || status === "planned") return 0;
  if (status === "superseded" || status === "stale") return 3;
  return 1;
}

/** Statuses that are not a verdict yet: the job waits in new/ or is being deployed. */
const PENDING = new Set(["queued", "claimed", "pending"]);

export interface VerdictOptions {
  /** The webhook URL the request went to; the history is beside it (`…/api/deployments/<id>`). */
  webhookUrl: string;
  jobId: string;
  token: string;
  timeoutMs: number;
  everyMs?: number;
  /** Each new status, as it changes (`queued`, `claimed`, then the outcome). */
  onStatus?: (status: string) => void;
  fetchImpl?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

export interface Verdict {
  status: string;
  reason: string | null;
  exitCode: number;
}

/** The history URL of one job, beside the webhook's (`https://app.example.com/api/webhook/github` → `…/api/deployments/<id>`). */
export function historyUrl(webhookUrl: string, jobId: string): string {
  const base = webhookUrl.replace(/\/api\/webhook\/github\/?(\?.*)?$/, "");
  return `${base === webhookUrl ? new URL(webhookUrl).origin : base}/api/deployments/${encodeURIComponent(jobId)}`;
}

/**
 * Ask the API's history for the job until it has an outcome, or `timeoutMs` passed. A 401 (the
 * token refused) and a 404 that lasts (the API keeps no history: no HISTORY_TOKEN) end the wait.
 * Throws with what went wrong; returns the verdict and its exit status.
 */
export async function waitForVerdict(o: VerdictOptions): Promise<Verdict> {
  const get = o.fetchImpl ?? fetch;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = o.now ?? Date.now;
  const url = historyUrl(o.webhookUrl, o.jobId);
  const started = now();
  let last = "";
  let missingSince: number | null = null;
  for (;;) {
    const res = await get(url, { headers: { authorization: `Bearer ${o.token}` }, signal: AbortSignal.timeout(15_000) }).catch(
      (err: unknown) => new Error(`the history could not be asked: ${(err as Error).message}`),
    );
    if (res instanceof Error) {
      if (now() - started > o.timeoutMs) throw res;
    } else if (res.status === 401) throw new Error("the history token was refused (401): is it the API's HISTORY_TOKEN?");
    else if (res.status === 404) {
      missingSince ??= now();
      if (now() - missingSince > 30_000)
        throw new Error(`${url} answers 404: the API keeps no history (HISTORY_TOKEN unset), or the job is unknown`);
    } else if (res.ok) {
      missingSince = null;
      const body = (await res.json()) as { deployment?: { status?: string; reason?: string | null } };
      const status = body.deployment?.status ?? "";
      if (status && status !== last) o.onStatus?.(status);
      last = status || last;
      if (status && !PENDING.has(status)) return { status, reason: body.deployment?.reason ?? null, exitCode: exitCodeOf(status) };
    }
    if (now() - started > o.timeoutMs)
      throw new Error(`no verdict within ${Math.round(o.timeoutMs / 1000)} s (last: ${last || "unknown"}); the deploy may still finish`);
    await sleep(o.everyMs ?? 2000);
  }
}
