// The baseline: a bare node:http server doing the same work with the same durability, written the
// plain way: raw-body HMAC verify, the job checked by the same schema, write + fsync it in tmp/, one
// job per delivery id (a link into ids/, which fails if the id came before: answered 200), link it
// into new/, fsync new/. One fsync pair per request (no group commit); no logging, metrics, body budget
// or redelivery rules.
import { promises as fs } from "node:fs";
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { JOB_VERSION, JobSchema, ensureSpool, jobFileName, openSpool, syncDir, writeTemp } from "../../spool/index.ts";

const [root = "", secret = "", port = "0"] = process.argv.slice(2);
const spool = openSpool(root);
await ensureSpool(spool);

async function write(
  p: { repository: { full_name: string }; ref: string; after: string; head_commit: { timestamp: string }; sender: { login: string } },
  id: string,
) {
  const now = new Date().toISOString();
  const job = JobSchema.parse({
    version: JOB_VERSION,
    kind: "deploy",
    deliveryId: id,
    event: "push",
    repository: p.repository.full_name,
    ref: p.ref,
    sha: p.after,
    committedAt: p.head_commit.timestamp,
    sender: p.sender.login,
    receivedAt: now,
  });
  const tmp = await writeTemp(spool, id, `${JSON.stringify(job, null, 2)}\n`);
  try {
    const seen = await fs.link(tmp, spool.file("ids", id)).then(
      () => false,
      () => true,
    );
    if (seen) return { jobId: id, duplicate: true };
    await fs.link(tmp, spool.file("new", jobFileName(job)));
  } finally {
    await fs.unlink(tmp);
  }
  await syncDir(spool.dir("new"));
  return { jobId: id };
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", async () => {
    const body = Buffer.concat(chunks);
    const given = Buffer.from(String(req.headers["x-hub-signature-256"] ?? ""));
    const want = Buffer.from(`sha256=${createHmac("sha256", secret).update(body).digest("hex")}`);
    if (given.length !== want.length || !timingSafeEqual(given, want)) {
      res.writeHead(401).end();
      return;
    }
    const answer = await write(JSON.parse(body.toString("utf8")), String(req.headers["x-github-delivery"]));
    res.writeHead(answer.duplicate ? 200 : 202, { "content-type": "application/json" }).end(JSON.stringify(answer));
  });
});
server.listen(Number(port), "127.0.0.1", () => process.stdout.write("listening\n"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
