import { promises as fs } from "node:fs";
import { toSpoolError, type Spool } from "./layout.ts";

/** A temp file older than this belongs to a writer that died; a live write takes milliseconds. */
export const STALE_TMP_MS = 10 * 60 * 1000;

/**
 * Remove temp files left in `tmp/` by writers that died mid-write. They are never published:
 * a job reaches `new/` only by the writer's own link after fsync. Returns the names removed.
 */
export async function cleanStaleTemp(spool: Spool, now = Date.now(), maxAgeMs = STALE_TMP_MS): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await fs.readdir(spool.dir("tmp"));
  } catch (err) {
    throw toSpoolError(err, "listing tmp/");
  }
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
