// The baseline: a bare node:http server doing the same raw-body HMAC verify and the same durable job write.
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { JOB_VERSION, ensureSpool, openSpool, publishJob } from "../../spool/index.ts";

const [root = "", secret = "", port = "0"] = process.argv.slice(2);
const spool = openSpool(root);
await ensureSpool(spool);

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
    const p = JSON.parse(body.toString("utf8"));
    const now = new Date().toISOString();
    const r = await publishJob(spool, {
      version: JOB_VERSION, kind: "deploy", deliveryId: String(req.headers["x-github-delivery"]), event: "push",
      repository: p.repository.full_name, ref: p.ref, sha: p.after, committedAt: p.head_commit.timestamp,
      sender: p.sender.login, receivedAt: now,
    });
    res.writeHead(202, { "content-type": "application/json" }).end(JSON.stringify({ jobId: r.jobId }));
  });
});
server.listen(Number(port), "127.0.0.1", () => process.stdout.write("listening\n"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
