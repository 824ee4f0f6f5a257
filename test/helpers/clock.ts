import type { Clock } from "../../lib/clock.ts";

export interface VirtualClock extends Clock {
  /** Every sleep asked for, in order (ms). */
  readonly sleeps: number[];
  /** Move time forward without a sleep (what a slow call would cost). */
  advance(ms: number): void;
}

/** Time that moves only when code sleeps (or a test advances it): retry and deadline paths run in milliseconds. */
export function virtualClock(start = Date.parse("2026-11-26T12:00:00Z")): VirtualClock {
  let t = start;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => new Date(t),
    advance(ms) {
      t += ms;
    },
    async sleep(ms) {
      sleeps.push(ms);
      t += ms;
      await Promise.resolve();
    },
  };
}
