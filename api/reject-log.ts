import type { Logger } from "pino";

/** A rejected request, as the warn line about it says it. */
export interface Rejection {
  status: number;
  reason: string;
  [field: string]: unknown;
}

/**
 * Log rejected requests (401, 413, 415, 503, …) at warn, at most one line per status every
 * `everyMs`; the next line says how many were left out meanwhile. A flood cannot flood the journal.
 * @example
 * const rejected = createRejectLog(log);
 * rejected({ status: 401, reason: "signature does not match the payload" });
 */
export function createRejectLog(log: Logger, everyMs = 10_000, now = () => Date.now(), msg = "webhook rejected"): (r: Rejection) => void {
  const last = new Map<number, { at: number; left: number }>();
  return (r) => {
    const seen = last.get(r.status);
    const t = now();
    if (seen && t - seen.at < everyMs) {
      seen.left += 1;
      return;
    }
    last.set(r.status, { at: t, left: 0 });
    log.warn(seen?.left ? { notLogged: seen.left, ...r } : r, msg);
  };
}
