// The reconcile loop's snapshot read from the engine's API over its local socket (no docker CLI process
// per pass) is what the three CLI calls give, on the real engine: the same specs with Docker's defaults
// filled in, the same task counts (a scaled service, a global one, one that cannot start), the same
// network names. Where the CLI talks to anything but a local socket, the CLI is used.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { readAtMost } from "../lib/bounded.ts";
import { createDockerRunner } from "../agent/docker.ts";
import { engineReader, localEngine } from "../agent/engine-socket.ts";
import { snapshot } from "../agent/reconcile/reconcile.ts";
import { onEnd } from "./helpers/cleanup.ts";
import { docker, uniqueStack } from "./helpers/swarm.ts";

/** A spec as compared: the CLI's own type may add fields the engine left out at their zero value. */
const comparable = (spec: unknown) =>
  JSON.parse(JSON.stringify(spec), (k: string, v: unknown) => (k === "NoNewPrivileges" && v === false ? undefined : v)) as unknown;

describe("the engine's API on its local socket", () => {
  it("gives the snapshot the docker CLI gives: specs with defaults, task counts, network names", async (t) => {
    const stack = uniqueStack(t);
    const svc = (name: string, ...args: string[]) =>
      docker(["service", "create", "--detach", "--name", `${stack}_${name}`, "--label", `com.docker.stack.namespace=${stack}`, ...args]);
    await docker(["network", "create", "--driver", "overlay", `${stack}_net`]);
    onEnd(t, async () => {
      const ids = (await docker(["service", "ls", "-q", "--filter", `label=com.docker.stack.namespace=${stack}`]))
        .split("\n")
        .filter(Boolean);
      if (ids.length > 0) await docker(["service", "rm", ...ids]);
      await new Promise((r) => setTimeout(r, 2000));
      await docker(["network", "rm", `${stack}_net`]).catch(() => undefined);
    });
    await svc("two", "--replicas", "2", "--network", `${stack}_net`, "--env", "A=1", "swarmhook-test/busybox", "sleep", "3600");
    await svc("everywhere", "--mode", "global", "swarmhook-test/busybox", "sleep", "3600");
    // an image nobody has: its task never runs, so running < desired
    await svc("never", "--replicas", "1", "--no-resolve-image", "swarmhook-test/not-built-anywhere:1", "sleep", "1");
    const runner = createDockerRunner();
    const engine = await localEngine(runner);
    assert.ok(engine, "the CLI talks to a local socket here");
    assert.match(engine.socket, /\.sock$/);

    for (let i = 0; i < 60; i++) {
      const [cli, api] = [await snapshot(runner, undefined, null), await snapshot(runner, undefined, engine)];
      const mine = (s: typeof cli) =>
        s.specs.filter((x) => x.Spec.Name.startsWith(`${stack}_`)).sort((a, b) => a.Spec.Name.localeCompare(b.Spec.Name));
      const tasks = (s: typeof cli) => [...s.tasks].filter(([n]) => n.startsWith(`${stack}_`)).sort();
      const settled = (s: typeof cli) => s.tasks.get(`${stack}_two`)?.running === 2 && s.tasks.get(`${stack}_everywhere`)?.running === 1;
      if (JSON.stringify(tasks(cli)) !== JSON.stringify(tasks(api)) || !settled(cli)) {
        await new Promise((r) => setTimeout(r, 500)); // tasks still starting, or changing between the two reads
        continue;
      }
      assert.equal(mine(api).length, 3);
      assert.deepEqual(mine(api).map(comparable), mine(cli).map(comparable), "the specs, defaults filled in");
      assert.deepEqual(api.networks, cli.networks);
      const counts = Object.fromEntries(tasks(api));
      assert.deepEqual(counts[`${stack}_two`], { running: 2, desired: 2 });
      assert.deepEqual(counts[`${stack}_everywhere`], { running: 1, desired: 1 });
      assert.equal(counts[`${stack}_never`]?.running, 0);
      assert.equal(counts[`${stack}_never`]?.desired, 1);
      return;
    }
    assert.fail("the two reads never agreed on the tasks within 30 s");
  });

  it("is not used for an engine the CLI reaches over TCP, nor by a docker that cannot say; a 404 is null, other statuses throw", async () => {
    assert.equal(await localEngine(createDockerRunner({ env: { DOCKER_HOST: "tcp://127.0.0.1:1" } })), null);
    assert.equal(await localEngine(createDockerRunner({ bin: "false" })), null);
    const host = await localEngine(createDockerRunner());
    const reader = engineReader(host?.socket ?? "/var/run/docker.sock");
    assert.equal(await reader.get("/services/no-such-service-here"), null);
    await assert.rejects(
      reader.get("/services?filters=%7Bnot-json"),
      /^Error: engine API \/services\?filters=%7Bnot-json: HTTP [45]\d\d: /,
    );
    await assert.rejects(engineReader("/nonexistent/docker.sock").get("/services"), /ENOENT/);
  });

  it("refuses an answer over 64 MiB, and reads one of exactly the bound (readAtMost, shared with the registry client)", async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "engine-socket-"));
    const socket = path.join(dir, "engine.sock");
    const bound = 64 * 1024 * 1024;
    let sent = -1; // bytes of /huge written before its connection closed
    const server = http.createServer((req, res) => {
      if (req.url !== "/huge") {
        res.writeHead(200, { "content-type": "application/json" }).end(`"${"a".repeat(bound - 2)}"`);
        return;
      }
      // four times the bound, a MiB at a time as the client takes it: a reader that stops at the bound cuts it short
      const total = 4 * bound;
      let written = 0;
      res.writeHead(200, { "content-type": "application/json", "content-length": String(total) });
      const more = () => {
        while (written < total && !res.destroyed) {
          written += 1024 * 1024;
          if (!res.write(Buffer.alloc(1024 * 1024, 0x61))) return void res.once("drain", more);
        }
        res.end();
      };
      res.on("close", () => (sent = written));
      more();
    });
    await new Promise<void>((r) => server.listen(socket, r));
    t.after(() => {
      server.closeAllConnections();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const reader = engineReader(socket);
    await assert.rejects(reader.get("/huge"), /^Error: engine API \/huge: answer over 67108864 bytes$/);
    assert.equal(((await reader.get("/fits")) as string).length, bound - 2);
    for (let i = 0; i < 50 && sent < 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(sent > 0 && sent < 4 * bound, `the oversized answer's connection was cut, not read to its end (${sent} bytes sent)`);

    const chunks = (n: number) => Readable.from([Buffer.alloc(n - 1, 1), Buffer.alloc(1, 2)]);
    assert.deepEqual([...(await readAtMost(chunks(5), 5, () => new Error("over")))], [1, 1, 1, 1, 2]);
    await assert.rejects(
      readAtMost(chunks(6), 5, () => new Error("over")),
      /^Error: over$/,
    );
  });
});
