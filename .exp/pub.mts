import { mkdtempSync, rmSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { ensureSpool, openSpool, publishJob, writeTemp, publishNoClobber, syncDir, jobFileName } from "../spool/index.ts";
import { makeJob } from "../test/helpers/jobs.ts";
const variant = process.argv[2];
const dir = mkdtempSync("/tmp/pubx-");
const spool = openSpool(dir); await ensureSpool(spool);
const N = 3000, C = 50;
let i = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, async () => {
  while (i < N) { i++;
    const job = makeJob({ deliveryId: randomUUID() });
    if (variant === "bare") { const tmp = await writeTemp(spool, job.deliveryId, JSON.stringify(job)); await publishNoClobber(tmp, spool.file("new", jobFileName(job))); await syncDir(spool.dir("new")); }
    else if (variant === "link") { const tmp = await writeTemp(spool, job.deliveryId, JSON.stringify(job)); const fs = await import("node:fs/promises"); await fs.link(tmp, spool.file("ids", job.deliveryId)); await publishNoClobber(tmp, spool.file("new", jobFileName(job))); await syncDir(spool.dir("new")); }
    else await publishJob(spool, job);
  }
}));
console.log(variant, (N / ((performance.now() - t0) / 1000)).toFixed(0), "publishes/s");
rmSync(dir, { recursive: true });
