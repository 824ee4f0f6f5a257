import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { createDockerRunner } from "../agent/docker.ts";
import { isTransient } from "../agent/apply/deploy.ts";
import { pidAlive } from "./helpers/proc.ts";
import { waitFor } from "./helpers/swarm.ts";

// A fake `docker` for the spawn boundary alone; the same behaviours run on the real engine in agent.test.ts.
async function fakeDocker(script: string): Promise<{ bin: string; dir: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-fake-docker-"));
  const bin = path.join(dir, "docker");
  await writeFile(bin, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
  return { bin, dir };
}

describe("the docker process boundary", () => {
  it("passes argv untouched, adds the env, streams lines and keeps a bounded tail", async () => {
    const f = await fakeDocker(
      'printf "%s\\n" "$@"; echo "tag=$IMAGE_TAG" >&2; i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done; exit 3',
    );
    try {
      const lines: string[] = [];
      const r = await createDockerRunner({ bin: f.bin }).run(["stack", "deploy", "-c", "a b;$(touch /tmp/x)", "app"], {
        env: { IMAGE_TAG: "abc" },
        onLine: (l) => lines.push(l),
      });
      assert.equal(r.exitCode, 3);
      assert.equal(r.timedOut, false);
      assert.deepEqual(
        lines.slice(0, 5),
        ["stack", "deploy", "-c", "a b;$(touch /tmp/x)", "app"],
        "each argument arrives as one, unparsed",
      );
      assert.ok(lines.includes("tag=abc"));
      assert.equal(r.outputTail.split("\n").length, 200);
      assert.ok(r.outputTail.endsWith("line 499"));
    } finally {
      await rm(f.dir, { recursive: true, force: true });
    }
  });

  it("kills the whole process group when the deploy outlives its timeout", async () => {
    const f = await fakeDocker('sleep 300 & echo $! > "$PIDFILE"; wait');
    const pidfile = path.join(f.dir, "child.pid");
    try {
      const r = await createDockerRunner({ bin: f.bin }).run(["stack", "deploy"], { env: { PIDFILE: pidfile }, timeoutMs: 500 });
      assert.equal(r.timedOut, true);
      assert.equal(r.exitCode, null);
      const grandchild = Number((await readFile(pidfile, "utf8")).trim());
      await waitFor("the grandchild to die", async () => (pidAlive(grandchild) ? undefined : true), 5000, 50);
    } finally {
      await rm(f.dir, { recursive: true, force: true });
    }
  });

  it("reports a docker binary that cannot be run, without throwing", async () => {
    const missing = path.join(os.tmpdir(), "swarmhook-no-such-docker");
    assert.equal(existsSync(missing), false);
    const r = await createDockerRunner({ bin: missing }).run(["info"]);
    assert.equal(r.exitCode, null);
    assert.match(r.spawnError ?? "", /ENOENT/);
    assert.equal(isTransient(r), false);
  });
});
