import { promises as fs } from "node:fs";
import { listDir, toSpoolError, type Spool } from "./layout.ts";

/** A temp file older than this belongs to a writer that died; a live write takes milliseconds. */
export const STALE_TMP_MS = 10 * 60 * 1000;

/**
 * Remove temp files left in `tmp/` (the API's) and `wtmp/` (the watcher's) by writers that died
 * mid-write. They are never published: a file reaches `new/` or a history directory only by its
 * writer's own link after fsync. Returns the names removed (`tmp/<name>`, `wtmp/<name>`).
 */
export async function cleanStaleTemp(spool: Spool, now = Date.now(), maxAgeMs = STALE_TMP_MS): Promise<string[]> {
  const removed: string[] = [];
  for (const sub of ["tmp", "wtmp"] as const) {
    for (const name of await listDir(spool, sub)) {
      const file = spool.file(sub, name);
      try {
        const st = await fs.lstat(file);
        if (now - st.mtimeMs < maxAgeMs) continue;
        await fs.rm(file, { recursive: true, force: true });
        removed.push(`${sub}/${name}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toSpoolError(err, `removing ${sub}/${name}`);
      }
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
