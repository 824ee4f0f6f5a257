/**
 * Time as an effect: code with retries, backoff or deadlines takes a Clock, so a test can run it in
 * virtual time (see test/helpers/clock.ts) while production uses the system clock.
 */
export interface Clock {
  now(): Date;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = Object.freeze({
  now: () => new Date(),
  sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
});
