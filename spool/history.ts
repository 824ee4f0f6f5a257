import { promises as fs } from "node:fs";
import { describeIssues } from "../lib/zod.ts";
import { toSpoolError, type Spool } from "./layout.ts";
import { isUnreadable, readBounded } from "./read.ts";
import { ResultRecordSchema, type ResultRecord } from "./record.ts";

const MAX_RECORD_BYTES = 1024 * 1024;

export interface HistoryEntry {
  /** `done/<name>` or `failed/<name>` */
  path: string;
  record: ResultRecord | null;
  /** Why the record could not be read, when `record` is null. */
  problem?: string;
}

/**
 * The newest `limit` result records from `done/` and `failed/`, newest first. Names start with the
 * finish time, so only names are listed and sorted; only the `limit` files returned are read.
 * @example
 * for (const e of await listRecords(spool, 10)) console.log(e.record?.outcome ?? e.problem);
 */
export async function listRecords(spool: Spool, limit: number): Promise<HistoryEntry[]> {
  const names: string[] = [];
  for (const dir of ["done", "failed"] as const) {
    let entries: string[];
    try {
      entries = await fs.readdir(spool.dir(dir));
    } catch (err) {
      throw toSpoolError(err, `listing ${dir}/`);
    }
    for (const name of entries) if (name.endsWith(".json")) names.push(`${dir}/${name}`);
  }
  const byName = (p: string) => p.slice(p.indexOf("/") + 1);
  names.sort((a, b) => byName(b).localeCompare(byName(a)));
  const out: HistoryEntry[] = [];
  for (const p of names.slice(0, Math.max(0, limit))) out.push(await readEntry(spool, p));
  return out;
}

async function readEntry(spool: Spool, p: string): Promise<HistoryEntry> {
  const [dir, name] = p.split("/") as ["done" | "failed", string];
  const text = await readBounded(spool.file(dir, name), MAX_RECORD_BYTES).catch((err: Error) => ({ reason: err.message }));
  if (isUnreadable(text)) return { path: p, record: null, problem: text.reason };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { path: p, record: null, problem: `not JSON: ${(err as Error).message}` };
  }
  const parsed = ResultRecordSchema.safeParse(data);
  return parsed.success ? { path: p, record: parsed.data } : { path: p, record: null, problem: describeIssues(parsed.error) };
}
