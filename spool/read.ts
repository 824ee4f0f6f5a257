import { constants, promises as fs } from "node:fs";
import type { z } from "zod";
import { describeIssues } from "../lib/zod.ts";
import { toSpoolError } from "./layout.ts";

/** Why a spool entry cannot be read as one of our files; the entry is then quarantined or skipped, never followed. */
export interface Unreadable {
  reason: string;
}

/**
 * Read a small spool file the safe way: never follow a symbolic link, never block on a FIFO or a
 * device, regular files only, at most `maxBytes`, UTF-8 only. What is not such a file comes back as
 * `{ reason }`; only a failure of the spool itself (the directory gone, I/O) throws a SpoolError.
 */
export async function readBounded(file: string, maxBytes: number): Promise<string | Unreadable> {
  let handle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const st = await handle.stat();
    if (!st.isFile()) return { reason: `not a regular file (${kindOf(st)})` };
    if (st.size > maxBytes) return { reason: `file too large (${st.size} bytes > ${maxBytes})` };
    // sized by the file, not by the bound: a 4 MiB bound read 20 times a pass held 80 MiB of zeroes until GC
    let buf = Buffer.allocUnsafe(st.size + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > maxBytes) return { reason: `file too large (> ${maxBytes} bytes)` }; // it grew since stat
      if (n === buf.length) buf = Buffer.concat([buf, Buffer.allocUnsafe(Math.min(buf.length, maxBytes + 1 - n))]);
    }
    return new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(0, n));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP") return { reason: "a symbolic link, not a spool file" };
    if (code === "EACCES" || code === "EPERM") return { reason: `unreadable (${code})` };
    if (code === "EISDIR") return { reason: "not a regular file (directory)" };
    if (code === "ENXIO" || code === "ENODEV") return { reason: `not a regular file (${code})` };
    if (err instanceof TypeError) return { reason: "not UTF-8 text" };
    throw toSpoolError(err, `reading ${file}`);
  } finally {
    await handle?.close();
  }
}

function kindOf(st: import("node:fs").Stats): string {
  if (st.isDirectory()) return "directory";
  if (st.isFIFO()) return "FIFO";
  if (st.isSocket()) return "socket";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "device";
  return "special file";
}

export const isUnreadable = (r: string | Unreadable): r is Unreadable => typeof r !== "string";

/**
 * What readBounded gave, as JSON checked against `schema`: `{ value }`, or `{ problem }` saying why
 * not (unreadable, not JSON, or the schema's issues). One way for every small spool file read back.
 * @example
 * const r = parseJson(await readBounded(file, 64 * 1024), OutboxEntrySchema);
 */
export function parseJson<T>(text: string | Unreadable, schema: z.ZodType<T>): { value: T } | { problem: string } {
  if (isUnreadable(text)) return { problem: text.reason };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { problem: `not JSON: ${(err as Error).message}` };
  }
  const parsed = schema.safeParse(data);
  return parsed.success ? { value: parsed.data } : { problem: describeIssues(parsed.error) };
}
