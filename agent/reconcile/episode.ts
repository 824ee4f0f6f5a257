import type { ReconcileState } from "../../spool/index.ts";
import type { Plan } from "../prepare/index.ts";

/** A service running fewer tasks than it asks for. */
export interface Short {
  service: string;
  running: number;
  desired: number;
}

/** What one pass found to tell about a stack; each is told once per episode. */
export type EpisodeEvent =
  | { type: "drift"; summary: string }
  /** The drift changed while it lasted (another service, another field): logged, not sent to the chat again. */
  | { type: "drift_changed"; summary: string }
  | { type: "in_sync"; lastedMs: number; since: string }
  | { type: "degraded"; services: Short[] }
  | { type: "recovered_tasks"; lastedMs: number };

/** Passes a service must stay below desired before it is reported (Swarm reschedules in the meantime). */
export const DEGRADED_AFTER_PASSES = 3;

export const freshState = (stack: string, now: Date): ReconcileState => ({
  stack,
  checkedAt: now.toISOString(),
  queued: [],
  drift: null,
  degraded: null,
  heal: null,
});

/**
 * One pass's comparison laid over what the stack's state already knew: a drift episode starts with
 * the first pass that sees a difference and ends with the first that sees none; services below
 * desired are reported once they stayed so for DEGRADED_AFTER_PASSES passes. Returns the new state
 * and what to tell (nothing for an episode already told, so a restart repeats nothing).
 * @example
 * const { state, events } = observe(known, { plan, short: [] }, "done/…", new Date());
 */
export function observe(
  known: ReconcileState,
  seen: { plan: Plan; short: Short[] },
  record: string | undefined,
  now: Date,
): { state: ReconcileState; events: EpisodeEvent[] } {
  const events: EpisodeEvent[] = [];
  const at = now.toISOString();
  let drift = known.drift;
  const { changes, summary } = seen.plan;
  if (changes.length > 0) {
    const services = changes.map((c) => ({ service: c.service, change: c.change, fields: c.fields.map((f) => f.field) }));
    const clipped = summary.slice(0, 4000);
    if (!drift) events.push({ type: "drift", summary: clipped });
    else if (drift.summary !== clipped) events.push({ type: "drift_changed", summary: clipped });
    drift = { since: drift?.since ?? at, ...(record ? { record } : {}), summary: clipped, services: services.slice(0, 200) };
  } else if (drift) {
    events.push({ type: "in_sync", lastedMs: now.getTime() - Date.parse(drift.since), since: drift.since });
    drift = null;
  }
  let degraded = known.degraded;
  if (seen.short.length > 0) {
    const passes = (degraded?.passes ?? 0) + 1;
    const due = passes >= DEGRADED_AFTER_PASSES;
    if (due && !degraded?.reported) events.push({ type: "degraded", services: seen.short });
    degraded = { since: degraded?.since ?? at, passes, reported: due, services: seen.short.slice(0, 200) };
  } else if (degraded) {
    if (degraded.reported) events.push({ type: "recovered_tasks", lastedMs: now.getTime() - Date.parse(degraded.since) });
    degraded = null;
  }
  return { state: { ...known, checkedAt: at, drift, degraded }, events };
}
