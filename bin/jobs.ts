// `swarmhook jobs`: what is pending and how the last jobs ended, read from the spool.
import { promises as fs } from "node:fs";
import { stripControl } from "../lib/text.ts";
import {
  listRecords,
  openSpool,
  readImageWaits,
  readReconcileStates,
  readWatcherStatus,
  shortSha,
  type ReconcileState,
} from "../spool/index.ts";
import { listReports, openOutbox, readReport, type Outbox } from "../agent/report/outbox.ts";

export const JOBS_HELP = `swarmhook jobs [--spool DIR] [--state DIR] [--last N]
  Opens with any drift the reconcile loop found (a service changed, added or removed by hand since
  the last deploy) and services running fewer tasks than desired. Lists the jobs waiting in new/ and work/ (and which of them waits for images its registry does
  not have yet: IMAGE_WAIT_S), the reports to GitHub and chat not yet delivered (read
  from the watcher's outbox in --state, default STATE_DIR or /var/lib/swarmhook: run it on the
  watcher's node, kvm8, to see them), then the last N (default 10) outcomes from done/ and failed/,
  newest last: time, outcome, stack, commit, delivery, reason. Without --spool and SPOOL_DIR, after
  npm start (swarmhook local), the local spool and state in .swarmhook/.
`;

/** Only what is printable reaches the terminal: a reason may quote docker's output or a payload. */
const clean = (text: string) => stripControl(text).replace(/[\n\t]+/g, " ");

export async function listJobs(spoolDir: string, last: number, stateDir = "/var/lib/swarmhook"): Promise<string> {
  const spool = openSpool(spoolDir);
  const lines: string[] = [];
  for (const rs of await readReconcileStates(spool)) {
    if (rs.drift) lines.push(clean(`drift: ${driftLine(rs.stack, rs.drift.services)} (since ${rs.drift.since})`));
    if (rs.degraded?.reported)
      lines.push(
        clean(
          `degraded: ${rs.degraded.services.map((s) => `${rs.stack}_${s.service} ${s.running}/${s.desired} running`).join(", ")} (since ${rs.degraded.since})`,
        ),
      );
  }
  const status = await readWatcherStatus(spool);
  if (status)
    lines.push(clean(`watcher: NOT DEPLOYING since ${status.waitingSince}: ${status.problem} (fix: ${status.fix}); jobs wait in new/`));
  for (const dir of ["new", "work"] as const) {
    const names = (await fs.readdir(spool.dir(dir)).catch(() => [])).sort();
    lines.push(`${dir}/: ${names.length === 0 ? "empty" : clean(names.join(" "))}`);
  }
  for (const w of await readImageWaits(spool))
    lines.push(clean(`${w.stack}: job ${w.jobId} (${shortSha(w.sha)}) waiting for images: ${w.images.join(", ")} (since ${w.since})`));
  const undelivered = await outboxLine(openOutbox(stateDir));
  if (undelivered) lines.push(undelivered);
  const entries = (await listRecords(spool, { limit: last })).reverse();
  lines.push(`last ${entries.length} finished:`);
  for (const { path, record: r, problem } of entries) {
    if (!r) lines.push(`${path}: unreadable record (${clean((problem ?? "").split("\n")[0] ?? "")})`);
    else
      lines.push(
        clean(
          [r.timings.finished, r.outcome.padEnd(11), r.stack ?? "-", r.job ? shortSha(r.job.sha) : "-", r.jobId, r.reason ?? ""].join("  "),
        ).trimEnd(),
      );
  }
  return `${lines.join("\n")}\n`;
}

/** `app_web image, replicas; app_extra removed`: each drifted service by its Docker name, and what differs. */
function driftLine(stack: string, services: NonNullable<ReconcileState["drift"]>["services"]): string {
  return services
    .map(
      (s) =>
        `${stack}_${s.service} ${s.change === "update" ? s.fields.join(", ") : s.change === "add" ? "missing" : "not in the stack file"}`,
    )
    .join("; ");
}

/** Reports still in the outbox (GitHub or chat down, or slow): how many, since when, and the last error. */
async function outboxLine(outbox: Outbox): Promise<string | null> {
  const names = await listReports(outbox).catch(() => []);
  if (names.length === 0) return null;
  const oldest = await readReport(outbox, names[0] as string).catch(() => null);
  const entry = oldest && "entry" in oldest ? oldest.entry : null;
  const since = entry ? `, oldest from ${entry.createdAt}` : "";
  const error = entry?.lastError ? `, last error: ${entry.lastError}` : "";
  return clean(`outbox: ${names.length} report${names.length === 1 ? "" : "s"} undelivered${since}${error}`);
}
