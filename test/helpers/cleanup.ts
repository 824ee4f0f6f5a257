/** What a test context offers for cleanup (node:test's TestContext). */
export interface Ends {
  after(fn: () => Promise<void> | void): void;
}

const stacks = new WeakMap<Ends, (() => Promise<void> | void)[]>();

/**
 * Run `fn` when the test ends, last registered first (node:test runs `t.after` hooks first-in,
 * first-out; a watcher must stop before its spool is removed, and it was started after it).
 */
export function onEnd(t: Ends, fn: () => Promise<void> | void): void {
  let fns = stacks.get(t);
  if (!fns) {
    const list: (() => Promise<void> | void)[] = [];
    stacks.set(t, (fns = list));
    t.after(async () => {
      for (const f of list.reverse()) await f();
    });
  }
  fns.push(fn);
}
