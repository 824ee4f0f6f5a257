// swarmhook doctor on the real one-node swarm: all ✓ on a healthy set-up, and each fault fails
// exactly its own check, with the command that fixes it.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { checkWatcher, type Check, type DoctorDeps, type UnitState } from "../bin/doctor-checks.ts";
import { SUBDIRS, ensureSpool, finishJob, openSpool, publishJob, claimJob } from "../spool/index.ts";
import { stackFile } from "./helpers/agent.ts";
import { mountBindfs, type BindfsMount } from "./helpers/bindfs.ts";
import { makeJob } from "./helpers/jobs.ts";
import { spawnTs } from "./helpers/proc.ts";
import { docker, removeStack, waitFor } from "./helpers/swarm.ts";

const APP_GID = 1011;

/** Run `swarmhook doctor --json` as an operator would, with the watcher's environment. */
async function doctor(env: Record<string, string>): Promise<{ code: number | null; checks: Check[]; err: string }> {
  const p = spawnTs("bin/swarmhook.ts", ["doctor", "--json"], env);
  const code = await p.exited;
  return { code, checks: JSON.parse(p.out() || "[]") as Check[], err: p.err() };
}

const failed = (checks: Check[]) => checks.filter((c) => c.ok === false);

describe("swarmhook doctor on the one-node swarm", { timeout: 300_000 }, () => {
  const tag = randomBytes(3).toString("hex");
  const names = { stack: `shdoc-${tag}`, net: `shdoc-net-${tag}`, secret: `shdoc-secret-${tag}`, label: `shdoc_${tag}` };
  let source: string;
  let mount: BindfsMount;
  let health: http.Server;
  let env: Record<string, string>;

  before(async () => {
    const self = await docker(["info", "-f", "{{.Swarm.NodeID}}"]);
    await docker(["network", "create", "-d", "overlay", "--attachable", names.net]);
    await docker(["secret", "create", names.secret, "-"], { input: "s3cret" });
    await docker(["node", "update", "--label-add", `${names.label}=true`, self]);
    // the spool as on kvm8: group app, mode 2770, and a mount (bindfs stands in for the NFS bind mount)
    source = await mkdtemp(path.join(os.tmpdir(), "swarmhook-doctor-"));
    await ensureSpool(openSpool(source));
    for (const sub of SUBDIRS) await chown(path.join(source, sub), 0, APP_GID);
    mount = await mountBindfs(source);
    const spool = openSpool(mount.mountpoint);
    const job = makeJob();
    await publishJob(spool, job);
    await claimJob(spool, `${job.deliveryId}.json`);
    const now = new Date().toISOString();
    const timings = { received: now, claimed: now, started: now, finished: now };
    await finishJob(spool, {
      outcome: "success",
      jobId: job.deliveryId,
      job,
      stack: names.stack,
      timings,
      attempts: [],
      services: [],
      warnings: [],
    });
    health = http.createServer((_req, res) => res.end('{"status":"ok"}'));
    await new Promise<void>((r) => health.listen(0, "127.0.0.1", () => r()));
    env = {
      SPOOL_DIR: mount.mountpoint,
      STACK_FILE: stackFile("doctor"),
      STACK_NAME: names.stack,
      HEALTH_URL: `http://127.0.0.1:${(health.address() as { port: number }).port}/health`,
      DOC_NET: names.net,
      DOC_SECRET: names.secret,
      DOC_LABEL: names.label,
    };
    await docker(["stack", "deploy", "-c", stackFile("doctor"), names.stack, "--detach=true"], { env });
    await waitFor(
      "the stack converged",
      async () => ((await docker(["stack", "services", names.stack, "--format", "{{.Replicas}}"])) === "1/1" ? true : undefined),
      120_000,
      500,
    );
  });

  after(async () => {
    await removeStack(names.stack);
    await docker(["network", "rm", names.net]).catch(() => undefined);
    await docker(["secret", "rm", names.secret]).catch(() => undefined);
    await docker(["node", "update", "--label-rm", names.label, await docker(["info", "-f", "{{.Swarm.NodeID}}"])]).catch(() => undefined);
    health?.close();
    await mount?.unmount();
    await rm(source, { recursive: true, force: true });
  });

  it("passes every check on a healthy set-up (exit 0), one line each", async () => {
    const r = await doctor(env);
    assert.equal(r.code, 0, JSON.stringify(failed(r.checks), null, 2) + r.err);
    const byName = Object.fromEntries(r.checks.map((c) => [c.check, c]));
    for (const name of [
      "docker CLI",
      "engine and swarm",
      "swarm nodes",
      `networks of ${names.stack}`,
      `secrets of ${names.stack}`,
      `node labels of ${names.stack}`,
      `services of ${names.stack}`,
      `health of ${names.stack}`,
      "spool mount",
      "spool directories",
      "watcher last outcome",
    ]) {
      assert.equal(byName[name]?.ok, true, `${name}: ${JSON.stringify(byName[name])}`);
    }
    // not applicable here, whether systemd is PID 1 (the unit is not installed) or absent
    assert.equal(byName["watcher unit"]?.ok, null, JSON.stringify(byName["watcher unit"]));
    assert.match(byName["watcher unit"]?.detail ?? "", /systemd is not running here|is not installed on this node/);
    const text = spawnTs("bin/swarmhook.ts", ["doctor"], env);
    assert.equal(await text.exited, 0);
    assert.match(text.out(), /^✓ docker CLI: \d+\.\d+/m);
    assert.match(text.out(), /all checks passed\n$/);
  });

  it("renders a stack file the way the watcher does (IMAGE_TAG and DEPLOY_SHA set)", async () => {
    const r = await doctor({ ...env, STACK_FILE: path.join(import.meta.dirname, "..", "stack", "local-demo.yaml") });
    const rendered = r.checks.find((c) => c.check.startsWith("stack file of"));
    assert.equal(rendered?.ok, true, JSON.stringify(r.checks, null, 2));
    assert.match(rendered?.detail ?? "", /local-demo\.yaml renders: hello$/);
  });

  const faults: [string, () => Promise<Record<string, string>>, () => Promise<void>, string, RegExp][] = [
    [
      "a missing network",
      async () => ({ DOC_NET: `shdoc-gone-${tag}` }),
      async () => undefined,
      `networks of ${names.stack}`,
      /just swarm-networks/,
    ],
    [
      "a missing label",
      async () => ({ DOC_LABEL: `shdoc_gone_${tag}` }),
      async () => undefined,
      `node labels of ${names.stack}`,
      /--label-add shdoc_gone_\w+=true kvm8/,
    ],
    [
      "a missing secret",
      async () => ({ DOC_SECRET: `shdoc-gone-${tag}` }),
      async () => undefined,
      `secrets of ${names.stack}`,
      /just swarm-secrets/,
    ],
    [
      // done/ writable by the API's group: the watcher would trust records the API could plant
      "a watcher-only spool directory the API's group may write",
      async () => (await chmod(path.join(source, "done"), 0o2770), {}),
      () => chmod(path.join(source, "done"), 0o2750),
      "spool directories",
      /scripts\/spool-setup\.sh/,
    ],
    [
      "the bare mount point instead of the mounted spool",
      async () => ({ SPOOL_DIR: source }),
      async () => undefined,
      "spool mount",
      /nfs-server\.sh/,
    ],
  ];
  for (const [what, inject, undo, check, fix] of faults) {
    it(`fails exactly "${check}" for ${what}, with its fix`, async () => {
      const extra = await inject();
      try {
        const r = await doctor({ ...env, ...extra });
        assert.deepEqual(
          failed(r.checks).map((c) => c.check),
          [check],
          JSON.stringify(failed(r.checks), null, 2),
        );
        assert.equal(r.code, 1);
        assert.match(failed(r.checks)[0]?.fix ?? "", fix);
      } finally {
        await undo();
      }
    });
  }
});

describe("swarmhook doctor's watcher unit check", () => {
  it("is not applicable without systemd or where the unit is not installed, passes active, fails inactive with its fix", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), "swarmhook-unit-"));
    try {
      await ensureSpool(openSpool(root));
      const d = { config: { spoolDir: root }, env: {} } as unknown as DoctorDeps;
      const unit = async (state: UnitState) => (await checkWatcher(d, state))[0];
      assert.equal((await unit("no-systemd"))?.ok, null);
      assert.equal((await unit("not-installed"))?.ok, null);
      assert.match((await unit("not-installed"))?.detail ?? "", /watcher-install\.sh/);
      assert.equal((await unit("active"))?.ok, true);
      const inactive = await unit("inactive");
      assert.equal(inactive?.ok, false);
      assert.match(inactive?.fix ?? "", /systemctl start webhook-watcher/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
