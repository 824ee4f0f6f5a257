import { constants, promises as fs } from "node:fs";
import { FILE_MODE, SpoolError, listDir, replaceWith, stamp, toSpoolError, writeTemp, type Spool } from "./layout.ts";
import { parseJson, readBounded } from "./read.ts";
import { DeliveryMarkSchema, MAX_JOB_BYTES } from "./deliveries.ts";
import { ResultRecordSchema, type ResultRecord } from "./record.ts";
import { DELIVERY_ID, JobSchema, jobIdFromFileName, type SpoolJob } from "./schema.ts";

const MAX_RECORD_BYTES = 1024 * 1024;
/** `index/records.log`: one line per record, oldest first (see appendIndex). */
const INDEX = "records.log";
const CHUNK = 64 * 1024;
/** A record's file name: `<finished-stamp>-<job id>.json`, written by finishJob or quarantine. */
export const RECORD_NAME = /^\d{8}T\d{9}Z-[A-Za-z0-9._-]{1,200}\.json$/;

export type HistoryDir = "done" | "failed";

export interface IndexEntry {
  /** `done/<name>` or `failed/<name>` */
  path: string;
  stack: string | null;
  outcome: string;
}

export interface HistoryEntry extends IndexEntry {
  record: ResultRecord | null;
  /** Why the record could not be read, when `record` is null. */
  problem?: string;
}

export interface HistoryQuery {
  limit: number;
  /** Only this stack's records. */
  stack?: string;
  /** Only records older than this one (a record's file name, as `next` of an earlier page). */
  before?: string;
  /** Only records with this outcome. */
  outcome?: string;
}

const nameOf = (p: string): string => p.slice(p.indexOf("/") + 1);
const line = (e: IndexEntry): string => `${e.path}\t${e.stack ?? "-"}\t${e.outcome}\n`;

function parseLine(text: string): IndexEntry | null {
  const [path, stack, outcome] = text.split("\t");
  if (!path || !stack || !outcome || !/^(done|failed)\//.test(path) || !RECORD_NAME.test(nameOf(path))) return null;
  return { path, stack: stack === "-" ? null : stack, outcome };
}

/**
 * Add a record to the history index (`index/records.log`), the only writer being the watcher. The
 * index is derived data, never fsynced: a line lost in a crash is put back by rebuildIndex at start.
 */
export async function appendIndex(spool: Spool, path: string, record: ResultRecord): Promise<void> {
  // O_NOFOLLOW: a link planted as the index must not make the watcher append anywhere else
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;
  let handle;
  try {
    handle = await fs.open(spool.file("index", INDEX), flags, FILE_MODE);
    if (!(await handle.stat()).isFile()) throw new SpoolError("io", "index/records.log is not a regular file");
    await handle.write(line({ path, stack: record.stack, outcome: record.outcome }));
  } catch (err) {
    throw toSpoolError(err, "appending to index/records.log");
  } finally {
    await handle?.close();
  }
}

/**
 * Index lines newest first, read backwards from the end in 64 KiB chunks: the newest N cost O(N),
 * whatever the history holds. A last line still being appended (no newline yet) is skipped; no
 * index yields nothing.
 */
async function* indexBackwards(spool: Spool): AsyncGenerator<IndexEntry, void, undefined> {
  let handle;
  try {
    handle = await fs.open(spool.file("index", INDEX), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw toSpoolError(err, "opening index/records.log");
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return;
    let pos = st.size;
    let carry = Buffer.alloc(0);
    let dropped = false; // the segment after the last newline: a line not yet complete, or nothing
    while (pos > 0) {
      const n = Math.min(CHUNK, pos);
      pos -= n;
      const buf = Buffer.alloc(n);
      await handle.read(buf, 0, n, pos);
      const data = Buffer.concat([buf, carry]);
      const parts: Buffer[] = [];
      let end = data.length;
      for (let i = data.length - 1; i >= 0; i--) {
        if (data[i] !== 0x0a) continue;
        parts.push(data.subarray(i + 1, end));
        end = i;
      }
      carry = Buffer.from(data.subarray(0, end));
      if (!dropped && parts.length > 0) {
        parts.shift();
        dropped = true;
      }
      for (const p of parts) {
        const e = parseLine(p.toString("utf8"));
        if (e) yield e;
      }
    }
    if (dropped && carry.length > 0) {
      const e = parseLine(carry.toString("utf8"));
      if (e) yield e;
    }
  } finally {
    await handle.close();
  }
}

/** Whether the index exists (a spool from before it, or one whose index was removed, has none until the watcher starts). */
async function hasIndex(spool: Spool): Promise<boolean> {
  return fs.lstat(spool.file("index", INDEX)).then(
    (st) => st.isFile(),
    () => false,
  );
}

/** Every record file name in done/ and failed/, newest first (O(all): for rebuilds, pruning, and a spool without an index). */
async function scanRecords(spool: Spool): Promise<string[]> {
  const names: string[] = [];
  for (const dir of ["done", "failed"] as const) {
    for (const name of await listDir(spool, dir)) if (RECORD_NAME.test(name)) names.push(`${dir}/${name}`);
  }
  return names.sort((a, b) => nameOf(b).localeCompare(nameOf(a)));
}

const matches = (e: IndexEntry, q: HistoryQuery): boolean =>
  (!q.stack || e.stack === q.stack) && (!q.outcome || e.outcome === q.outcome) && (!q.before || nameOf(e.path) < q.before);

/**
 * The newest records that match `q`, newest first, each read and checked against the schema. With
 * the index this reads only as far back as the page needs; without one (a spool the watcher has not
 * yet indexed) it lists done/ and failed/.
 * @example
 * for (const e of await listRecords(spool, { limit: 10, stack: "app" })) console.log(e.record?.outcome ?? e.problem);
 */
export async function listRecords(spool: Spool, q: HistoryQuery): Promise<HistoryEntry[]> {
  const out: HistoryEntry[] = [];
  if (q.limit <= 0) return out;
  if (await hasIndex(spool)) {
    for await (const e of indexBackwards(spool)) {
      if (!matches(e, q)) continue;
      out.push(await readEntry(spool, e));
      if (out.length >= q.limit) break;
    }
    return out;
  }
  for (const path of await scanRecords(spool)) {
    const e = await readEntry(spool, { path, stack: null, outcome: "" });
    const known = { ...e, stack: e.record?.stack ?? null, outcome: e.record?.outcome ?? "invalid" };
    if (!matches(known, q)) continue;
    out.push(known);
    if (out.length >= q.limit) break;
  }
  return out;
}

/** Read one record (`done/<name>` or `failed/<name>`), bounded and checked; a problem comes back in `problem`. */
export async function readRecord(spool: Spool, path: string): Promise<{ record: ResultRecord | null; problem?: string }> {
  const [dir, name] = path.split("/") as [HistoryDir, string];
  if ((dir !== "done" && dir !== "failed") || !name || !RECORD_NAME.test(name)) return { record: null, problem: "not a record path" };
  const text = await readBounded(spool.file(dir, name), MAX_RECORD_BYTES).catch((err: Error) => ({ reason: err.message }));
  const r = parseJson(text, ResultRecordSchema);
  return "value" in r ? { record: r.value } : { record: null, problem: r.problem };
}

async function readEntry(spool: Spool, e: IndexEntry): Promise<HistoryEntry> {
  return { ...e, ...(await readRecord(spool, e.path)) };
}

/**
 * Write the index again from done/ and failed/: lines already indexed are kept as they are; a record
 * missing from it (a crash between the record and its line, or records from before the index) is
 * read once. Run by the watcher at start and after pruning. Returns how many records it holds.
 */
export async function rebuildIndex(spool: Spool): Promise<number> {
  const known = new Map<string, IndexEntry>();
  for await (const e of indexBackwards(spool)) known.set(e.path, e);
  const paths = (await scanRecords(spool)).reverse();
  let text = "";
  for (const path of paths) {
    let e = known.get(path);
    if (!e) {
      const { record } = await readRecord(spool, path);
      e = { path, stack: record?.stack ?? null, outcome: record?.outcome ?? "invalid" };
    }
    text += line(e);
  }
  await replaceWith(await writeTemp(spool, "records-index", text), spool.file("index", INDEX));
  return paths.length;
}

/**
 * Remove records (and quarantined `.raw` files) finished more than `keepMs` ago, by the stamp that
 * starts their names (the watcher's own clock, never a commit's date), then rebuild the index (hourly).
 * Returns how many records were removed.
 */
export async function pruneRecords(spool: Spool, keepMs: number, now = Date.now()): Promise<number> {
  const cutoff = stamp(new Date(now - keepMs));
  let removed = 0;
  for (const dir of ["done", "failed"] as const) {
    for (const name of await listDir(spool, dir)) {
      if (!/^\d{8}T\d{9}Z-/.test(name) || name.slice(0, 19) >= cutoff) continue;
      await fs.rm(spool.file(dir, name), { recursive: true, force: true }).then(
        () => (removed += name.endsWith(".json") ? 1 : 0),
        () => undefined,
      );
    }
  }
  await rebuildIndex(spool); // also puts back a line whose append failed
  return removed;
}

/** A job still waiting: in `new/` (queued) or `work/` (claimed by the watcher, being or about to be deployed). */
export interface PendingEntry {
  id: string;
  where: "new" | "work";
  job: SpoolJob | null;
  problem?: string;
}

/** The jobs in `new/` and `work/` (at most `max` of each), newest received first; a file that is not a job says why. */
export async function listPendingJobs(spool: Spool, max = 500): Promise<PendingEntry[]> {
  const out: PendingEntry[] = [];
  for (const where of ["work", "new"] as const) {
    const names = (await listDir(spool, where)).filter((n) => jobIdFromFileName(n) !== null).slice(0, max);
    for (const name of names) out.push({ id: name.slice(0, -".json".length), where, ...(await readJob(spool, where, name)) });
  }
  const received = (e: PendingEntry) => e.job?.receivedAt ?? "";
  return out.sort((a, b) => received(b).localeCompare(received(a)));
}

async function readJob(spool: Spool, where: "new" | "work", name: string): Promise<{ job: SpoolJob | null; problem?: string }> {
  const text = await readBounded(spool.file(where, name), MAX_JOB_BYTES).catch((err: Error) => ({ reason: err.message }));
  const r = parseJson(text, JobSchema);
  return "value" in r ? { job: r.value } : { job: null, problem: r.problem };
}

/**
 * Where one delivery stands: its pending job, or the path of its latest record. The delivery's
 * marker in `ids/` names the record (O(1)); once the marker is pruned (a week), the index is read
 * backwards until the record is found.
 */
export async function findDelivery(spool: Spool, id: string): Promise<{ pending: PendingEntry } | { record: string } | null> {
  if (!DELIVERY_ID.test(id)) return null;
  for (const where of ["work", "new"] as const) {
    if (!(await fs.lstat(spool.file(where, `${id}.json`)).catch(() => null))) continue;
    return { pending: { id, where, ...(await readJob(spool, where, `${id}.json`)) } };
  }
  const mark = await readBounded(spool.file("ids", id), MAX_JOB_BYTES).catch((err: Error) => ({ reason: err.message }));
  const finished = parseJson(mark, DeliveryMarkSchema); // else pending, or gone: look in the index
  if ("value" in finished) return { record: finished.value.record };
  for await (const e of indexBackwards(spool)) if (nameOf(e.path).endsWith(`-${id}.json`)) return { record: e.path };
  return null;
}
