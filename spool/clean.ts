import { promises as fs } from "node:fs";
import { listDir, toSpoolError, type Spool } from "./layout.ts";

/** A temp file older than this belongs to a writer that died; a live write takes milliseconds. */
export const STALE_TMP_MS = 10 * 60 * 1000;

/**
 * Remove temp files left in `tmp/` by writers that died mid-write. They are never published:
 * a job reaches `new/` only by the writer's own link after fsync. Returns the names removed.
 */
export async function cleanStaleTemp(spool: Spool, now = Date.now(), maxAgeMs = STALE_TMP_MS): Promise<string[]> {
  const removed: string[] = [];
  const names = await listDir(spool, "tmp");
  for (const name of names) {
    const file = spool.file("tmp", name);
    try {
      const st = await fs.lstat(file);
      if (now - st.mtimeMs < maxAgeMs) continue;
      await fs.unlink(file);
      removed.push(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toSpoolError(err, `removing tmp/${name}`);
    }
  }
  return removed;
}

/**
 * How long a finished delivery's marker is kept: GitHub offers "Redeliver" for three days, and a
 * redelivery after the marker is gone would deploy again.
 */
export const MARK_KEEP_MS = 7 * 24 * 3600 * 1000;

/**
 * Remove markers in `ids/` of deliveries that finished more than `keepMs` ago. A pending marker (a
 * hard link to a job still in `new/` or `work/`, so more than one link) is never removed. Returns
 * how many were removed.
 */
export async function pruneMarks(spool: Spool, now = Date.now(), keepMs = MARK_KEEP_MS): Promise<number> {
  const names = await listDir(spool, "ids");
  let removed = 0;
  for (const name of names) {
    const file = spool.file("ids", name);
    const st = await fs.lstat(file).catch(() => null);
    if (!st || st.nlink > 1 || now - st.mtimeMs < keepMs) continue;
    await fs.unlink(file).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}
