import { promises as fs } from "node:fs";
import path from "node:path";
import { isUnreadable, readBounded } from "../../spool/index.ts";

// The stack as the last good deploy rendered it, kept beside the watcher's other local state: what
// the reconcile loop compares the running services with, without rendering the release again (two
// `docker stack config` per stack after every restart). It may hold the stack's variables' values
// (a password handed through STACK_ENV), so it lives in STATE_DIR/releases (0700, files 0600), never
// on the spool the API can read.

const MAX_BYTES = 4 * 1024 * 1024;
const dirOf = (stateDir: string) => path.join(stateDir, "releases");
const fileOf = (stateDir: string, stack: string) => path.join(dirOf(stateDir), `${stack}.json`);

/** Keep what the deploy recorded as `record` rendered; a failure only costs a render later. */
export async function keepRendered(stateDir: string, stack: string, record: string, doc: unknown): Promise<void> {
  const dir = dirOf(stateDir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  const file = fileOf(stateDir, stack);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify({ record, doc }), { mode: 0o600 });
  await fs.rename(tmp, file);
}

/** The rendering kept for `record`, or undefined when none is kept for that record (an older deploy, another record, a bad file). */
export async function readRendered(stateDir: string, stack: string, record: string): Promise<unknown> {
  const text = await readBounded(fileOf(stateDir, stack), MAX_BYTES).catch(() => null);
  if (text === null || isUnreadable(text)) return undefined;
  try {
    const kept = JSON.parse(text) as { record?: unknown; doc?: unknown };
    return kept.record === record ? kept.doc : undefined;
  } catch {
    return undefined;
  }
}
