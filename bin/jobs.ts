// `swarmhook jobs`: what is pending and how the last jobs ended, read from the spool.
import { promises as fs } from "node:fs";
import path from "node:path";
import { ResultRecordSchema } from "../spool/index.ts";

export const JOBS_HELP = `swarmhook jobs [--spool DIR] [--last N]
  Lists the jobs waiting in new/ and work/, then the last N (default 10) outcomes from done/ and
  failed/, newest last: time, outcome, stack, commit, delivery, reason.
`;

export async function listJobs(spoolDir: string, last: number): Promise<string> {
  const lines: string[] = [];
  for (const dir of ["new", "work"]) {
    const names = (await fs.readdir(path.join(spoolDir, dir)).catch(() => [])).sort();
    lines.push(`${dir}/: ${names.length === 0 ? "empty" : names.join(" ")}`);
  }
  const history: { name: string; dir: string }[] = [];
  for (const dir of ["done", "failed"]) {
    for (const name of await fs.readdir(path.join(spoolDir, dir)).catch(() => [])) if (name.endsWith(".json")) history.push({ name, dir });
  }
  // names start with the finish time, so a sort by name is a sort by time
  history.sort((a, b) => a.name.localeCompare(b.name));
  lines.push(`last ${Math.min(last, history.length)} of ${history.length} finished:`);
  for (const h of history.slice(-last)) {
    try {
      const r = ResultRecordSchema.parse(JSON.parse(await fs.readFile(path.join(spoolDir, h.dir, h.name), "utf8")));
      lines.push([r.timings.finished, r.outcome.padEnd(11), r.stack ?? "-", r.job?.sha.slice(0, 12) ?? "-", r.jobId, r.reason ?? ""].join("  ").trimEnd());
    } catch (err) {
      lines.push(`${h.dir}/${h.name}: unreadable record (${(err as Error).message.split("\n")[0]})`);
    }
  }
  return `${lines.join("\n")}\n`;
}
