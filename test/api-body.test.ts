// The webhook body under a flood, on the compiled API process as production runs it: the HMAC is
// computed as the body streams in, all bodies in flight share one budget, and a refused body still
// gets an answer the client can read.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { SECRET, deliver } from "./helpers/api.ts";
import { randomSha } from "./helpers/jobs.ts";
import { pushPayload } from "./helpers/payloads.ts";
import { freePort } from "./helpers/postgres.ts";
import { spawnDist, stopProc, type Proc } from "./helpers/proc.ts";
import { tempSpool, type TempSpool } from "./helpers/spool.ts";
import { waitFor } from "./helpers/swarm.ts";

const MB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, "x");

/** POST `size` bytes of junk with a well-formed but wrong signature, streamed; resolves with the status (or the socket error). */
function junk(port: number, size: number, declare = true): Promise<string> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "x-github-event": "push",
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": `sha256=${"0".repeat(64)}`,
      ...(declare ? { "content-length": String(size) } : {}),
    };
    const req = http.request({ host: "127.0.0.1", port, path: "/api/webhook/github", method: "POST", headers }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString()));
      res.on("end", () => resolve(`${res.statusCode} ${text}`));
    });
    req.on("error", (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        const n = Math.min(CHUNK.length, size - sent);
        sent += n;
        if (!req.write(CHUNK.subarray(0, n))) return void req.once("drain", pump);
      }
      req.end();
    };
    pump();
  });
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;
const statuses = (rs: string[]) => rs.map((r) => r.split(" ")[0]);

/** A raw connection that sends a webhook's headers announcing `declared` bytes, then `perSecond` bytes a second (0: nothing). */
function announce(port: number, declared: number, perSecond = 0): { socket: net.Socket; closedAt: Promise<number> } {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => undefined);
  socket.write(
    `POST /api/webhook/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n` +
      `X-GitHub-Delivery: ${randomUUID()}\r\nX-Hub-Signature-256: sha256=${"0".repeat(64)}\r\nContent-Length: ${declared}\r\n\r\n`,
  );
  const drip = perSecond > 0 ? setInterval(() => socket.writable && socket.write("x".repeat(perSecond / 10)), 100) : undefined;
  const closedAt = new Promise<number>((r) =>
    socket.on("close", () => {
      clearInterval(drip);
      r(Date.now());
    }),
  );
  return { socket, closedAt };
}

describe("webhook bodies under a flood (compiled API process)", () => {
  let t: TempSpool;
  let api: Proc;
  let port: number;
  before(async () => {
    t = await tempSpool();
    port = await freePort();
    api = spawnDist("api/main.js", [], {
      SPOOL_DIR: t.root,
      GITHUB_WEBHOOK_SECRET: SECRET,
      PORT: String(port),
      HOST: "127.0.0.1",
      DEPLOY_BRANCHES: "main",
      LOG_LEVEL: "warn",
    });
    await waitFor("the api", async () => ((await fetch(`http://127.0.0.1:${port}/health`)).ok ? true : undefined), 30_000, 100);
  });
  after(async () => {
    await stopProc(api);
    await t.cleanup();
  });

  it("16 concurrent unsigned 25 MB bodies: RSS stays under 200 MB, /health answers throughout, a valid push right after gets 202", async () => {
    const pid = api.child.pid as number;
    let peak = rssMb(pid);
    let healthy = 0;
    let unhealthy = 0;
    let flooding = true;
    const watch = (async () => {
      while (flooding) {
        peak = Math.max(peak, rssMb(pid));
        const ok = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) healthy++;
        else unhealthy++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const answers = await Promise.all(Array.from({ length: 16 }, () => junk(port, 25 * MB)));
    flooding = false;
    await watch;
    peak = Math.max(peak, rssMb(pid));
    const codes = statuses(answers);
    assert.ok(
      codes.every((c) => c === "401" || c === "503"),
      codes.join(" "),
    );
    assert.ok(codes.includes("503"), "bodies beyond the in-flight budget are refused with 503");
    assert.ok(answers.filter((a) => a.startsWith("503")).every((a) => /retry shortly/.test(a)));
    assert.ok(peak < 200, `peak RSS ${peak.toFixed(0)} MB`);
    assert.ok(healthy > 0 && unhealthy === 0, `/health: ${healthy} answered, ${unhealthy} did not`);
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    const r = await deliver(`http://127.0.0.1:${port}`, { event: "push", body });
    assert.equal(r.status, 202, r.text);
  });

  it("three connections announcing 64 MiB between them and sending nothing, and a sender at 100 B/s: a signed push still gets 202 within a second; the slow ones are cut", async () => {
    const opened = Date.now();
    const silent = [25 * MB, 25 * MB, 14 * MB].map((n) => announce(port, n));
    const slow = announce(port, 4096, 100);
    await new Promise((r) => setTimeout(r, 200));
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    const t0 = Date.now();
    const r = await deliver(`http://127.0.0.1:${port}`, { event: "push", body });
    const took = Date.now() - t0;
    assert.equal(r.status, 202, r.text);
    assert.ok(took < 1000, `answered in ${took} ms`);
    assert.ok(!slow.socket.destroyed && silent.every((c) => !c.socket.destroyed), "the push was answered while all four were still open");
    const closed = await Promise.all([slow, ...silent].map((c) => c.closedAt));
    for (const at of closed) assert.ok(at - opened < 10_000, `cut ${at - opened} ms after it opened (the minimum-rate window)`);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^swarmhook_webhook_bytes_in_flight 0$/m, "what the slow sender had sent is given back");
  });

  it("more than two large bodies (past 256 KiB) from one client at once get 503, and a small signed push from it still gets 202", async () => {
    const held = Array.from({ length: 2 }, () => announce(port, 20 * MB, 512 * 1024));
    await new Promise((r) => setTimeout(r, 800)); // each has sent past the small share
    const third = await new Promise<string>((resolve) => {
      const c = announce(port, 20 * MB, 512 * 1024);
      let text = "";
      c.socket.on("data", (d: Buffer) => (text += d.toString()));
      c.closedAt.then(
        () => resolve(text),
        () => resolve(text),
      );
      setTimeout(() => {
        c.socket.destroy();
      }, 2000);
    });
    assert.match(third, /^HTTP\/1\.1 503[\s\S]*more than 2 large request bodies from one client/);
    assert.match(third, /^retry-after: [1-9]\d*\r$/im, "the 503 says when to come back");
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    assert.equal((await deliver(`http://127.0.0.1:${port}`, { event: "push", body })).status, 202);
    for (const c of held) c.socket.destroy();
  });

  it("a client that never finishes its headers (slowloris) gets 408 once the headers timeout passes, and a push still gets 202 meanwhile", async () => {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => undefined);
    socket.write("POST /api/webhook/github HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: push\r\n"); // and never the blank line
    let text = "";
    socket.on("data", (d: Buffer) => (text += d.toString()));
    const opened = Date.now();
    const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now())));
    const body = JSON.stringify(pushPayload({ ref: "refs/heads/main", after: randomSha() }));
    assert.equal((await deliver(`http://127.0.0.1:${port}`, { event: "push", body })).status, 202);
    const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 20_000))]);
    socket.destroy();
    assert.ok(at > 0, "the connection was closed by the server");
    assert.match(text, /^HTTP\/1\.1 408 /, `answered: ${JSON.stringify(text.slice(0, 80))}`);
    assert.ok(at - opened >= 9_000, `not before the 10 s headers timeout: ${at - opened} ms`);
  });

  it("twenty 26 MB bodies get twenty readable 413s (declared or chunked), no connection reset", async () => {
    const declared = await Promise.all(Array.from({ length: 20 }, () => junk(port, 26 * MB)));
    assert.deepEqual(statuses(declared), Array(20).fill("413"), declared.filter((a) => !a.startsWith("413")).join("; "));
    assert.ok(declared.every((a) => /payload over 26214400 bytes/.test(a)));
    const chunked = await Promise.all(Array.from({ length: 2 }, () => junk(port, 26 * MB, false)));
    assert.deepEqual(statuses(chunked), ["413", "413"], chunked.join("; "));
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^swarmhook_webhook_requests_total\{status="413"\} 22$/m);
    assert.match(metrics, /^swarmhook_webhook_bytes_in_flight 0$/m, "every body's bytes given back");
  });
});
