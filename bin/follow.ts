// `swarmhook follow`: one deploy, live, from the spool: its phase and each service's tasks on the
// new version, until its record says how it ended (and the exit status says it too).
import { createLogUpdate } from "log-update";
import {
  findDelivery,
  listPendingJobs,
  listRecords,
  openSpool,
  readProgressOf,
  readRecord,
  sameRepository,
  shortSha,
  type Progress,
  type Spool,
} from "../spool/index.ts";
import { stripControl } from "../lib/text.ts";
import { exitCodeOf } from "./verdict.ts";

export const FOLLOW_HELP = `swarmhook follow [JOB_ID | --stack NAME] [--spool DIR]
  Shows one deploy as it happens, read from the spool like swarmhook jobs (SPOOL_DIR or --spool):
  queued, claimed, then the watcher's progress — the phase (waiting for images, deploying,
  verifying, checking health), each service's tasks on the new version against desired and what
  they are doing (pulling, starting, running, updating, rolling back), the time so far — and at the
  end the outcome and its reason. At a terminal the display redraws in place; piped, it prints one
  line per change. --stack follows the newest job of that stack (a running or pending one first).
  Works on a finished job too: it prints the outcome at once.
  Exit: 0 success or planned, 1 failed, rolled_back, blocked or invalid, 3 superseded or stale,
  2 usage (or no such job).
`;

/** Usage problems (exit 2). */
export class FollowUsage extends Error {}

export interface FollowOptions {
  spoolDir: string;
  jobId?: string | undefined;
  stack?: string | undefined;
  /** A terminal to redraw in place (log-update); without one, `write` gets one line per change. */
  tty?: NodeJS.WriteStream | undefined;
  write: (text: string) => void;
  everyMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** The job `--stack` means: its running deploy, else its newest pending job, else its newest record. */
async function jobOfStack(spool: Spool, stack: string): Promise<string> {
  const [newest] = await listRecords(spool, { stack, limit: 1 });
  const repository = newest?.record?.job && "repository" in newest.record.job ? newest.record.job.repository : undefined;
  const pending = await listPendingJobs(spool);
  for (const p of pending) if (await readProgressOf(spool, p.id).then((x) => x?.stack === stack)) return p.id;
  const mine = pending.find(
    (p) =>
      (p.job?.kind === "rollback" && p.job.stack === stack) ||
      (p.job?.kind === "deploy" && repository !== undefined && sameRepository(p.job.repository, repository)),
  );
  if (mine) return mine.id;
  if (newest?.record) return newest.record.jobId;
  throw new FollowUsage(`no job of stack ${stack} in the spool (pending or recorded)`);
}

/** What one look at the spool shows: the lines of the display, and the outcome once there is one. */
interface View {
  lines: string[];
  /** The lines without the clock: a change in these is a change worth a line when piped. */
  key: string;
  outcome?: { status: string; reason: string | null };
}

const secondsSince = (iso: string, now: number) => `${Math.max(0, Math.round((now - Date.parse(iso)) / 1000))} s`;

function progressLines(p: Progress): string[] {
  const width = Math.max(...p.services.map((s) => s.name.length), 7);
  const stage = (s: Progress["services"][number]) => (s.stage === undefined ? "" : `stage ${s.stage}  `);
  return p.services.map((s) => `  ${stage(s)}${s.name.padEnd(width)}  ${`${s.updated}/${s.desired}`.padStart(5)} new  ${s.state}`);
}

/** "stage 1 (2 of 3)" while a stack deploys in stages. */
const stageOf = (p: Progress) => (p.stage ? ` · stage ${p.stage.n} (${p.stage.index} of ${p.stage.of})` : "");

async function look(spool: Spool, id: string, now: number): Promise<View | null> {
  const found = await findDelivery(spool, id);
  if (!found) return null;
  if ("record" in found) {
    const { record } = await readRecord(spool, found.record);
    const status = record?.outcome ?? "unreadable";
    const reason = record?.reason ?? null;
    const head = `${id} · ${record?.stack ?? "?"} · ${record?.job && "sha" in record.job ? shortSha(record.job.sha) : "?"} · ${status}`;
    return { lines: [head, ...(reason ? [`  ${reason}`] : [])], key: `${status} ${reason ?? ""}`, outcome: { status, reason } };
  }
  const job = found.pending.job;
  const sha = job && "sha" in job ? shortSha(job.sha) : "?";
  const progress = found.pending.where === "work" ? await readProgressOf(spool, id) : null;
  if (!progress) {
    const state = found.pending.where === "new" ? "queued" : "claimed";
    const since = job?.receivedAt ? `, received ${secondsSince(job.receivedAt, now)} ago` : "";
    return { lines: [`${id} · ${sha} · ${state}${since}`], key: state };
  }
  const head = `${id} · ${progress.stack} · ${sha} · ${progress.phase}${stageOf(progress)} · ${secondsSince(progress.startedAt, now)}`;
  const rows = progressLines(progress);
  return { lines: [head, ...rows], key: `${progress.phase}${stageOf(progress)}\n${rows.join("\n")}` };
}

/**
 * Follow one job until its record: redraw at a terminal, a line per change when piped. Returns the
 * exit status its outcome means (bin/verdict.ts).
 */
export async function follow(o: FollowOptions): Promise<number> {
  const spool = openSpool(o.spoolDir);
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  if (o.jobId && o.stack) throw new FollowUsage("give a JOB_ID or --stack NAME, not both");
  const id = o.jobId ?? (o.stack ? await jobOfStack(spool, o.stack) : undefined);
  if (!id) throw new FollowUsage("a JOB_ID or --stack NAME is required (swarmhook jobs lists them)");
  const draw = o.tty ? createLogUpdate(o.tty) : null;
  let lastKey = "";
  for (;;) {
    const view = await look(spool, id, now());
    if (!view) throw new FollowUsage(`no job ${id} in the spool (pending or recorded)`);
    const lines = view.lines.map((l) => stripControl(l));
    if (draw) draw(lines.join("\n"));
    else if (view.key !== lastKey) o.write(`${new Date(now()).toISOString().slice(11, 19)} ${lines.join("\n")}\n`);
    lastKey = view.key;
    if (view.outcome) {
      draw?.done();
      return exitCodeOf(view.outcome.status);
    }
    await sleep(o.everyMs ?? 500);
  }
}
