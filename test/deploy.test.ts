// deployJob's retry, backoff and deadline paths in virtual time: a scripted docker and a clock that
// moves only when the code sleeps. The same paths run on the real engine in test/agent.test.ts.
import assert from "node:assert/strict";
import http from "node:http";
import { describe, it } from "node:test";
import { pino } from "pino";
import type { StackConfig } from "../agent/config.ts";
import type { RegistryClient } from "../agent/prepare/registry.ts";
import { ALLOW_ALL } from "../agent/prepare/stack-policy.ts";
import { MAX_BACKOFF_MS } from "../agent/apply/deploy.ts";
import { deployJob, type DeployPolicy } from "../agent/pipeline.ts";
import { checkHealth } from "../agent/verify/verify.ts";
import { virtualClock } from "./helpers/clock.ts";
import { makeJob } from "./helpers/jobs.ts";
import { scriptedDocker, type Answer } from "./helpers/scripted-docker.ts";

const log = pino({ level: "silent" });
const stack: StackConfig = {
  name: "app",
  file: "/nonexistent/stack.yaml",
  git: undefined,
  repository: undefined,
  branches: [],
  tags: [],
  vars: {},
  policy: ALLOW_ALL,
  healthUrl: undefined,
  environment: "app",
  environmentUrl: undefined,
  productionEnvironment: true,
  reconcile: false,
  selfHeal: false,
  dependsOn: [],
};
const policy: DeployPolicy = {
  deployTimeoutMs: 600_000,
  retries: 3,
  retryBackoffMs: 2000,
  healthTimeoutMs: 120_000,
  digestPolicy: "warn",
  imageWaitMs: 0,
};
/** The images here are held by the (scripted) engine, so no registry is asked; one that is fails the test. */
const registry: RegistryClient = {
  lookup: (ref) => Promise.reject(new Error(`no registry in these tests, asked for ${ref.text}`)),
};
const DAEMON_DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?";

/** `docker stack config` renders locally (no daemon needed, as on the real CLI); every other call answers `other`. */
const rendersThen =
  (other: Answer) =>
  (args: string[]): Answer =>
    args[1] === "config"
      ? { exitCode: 0, stdout: "services:\n  web:\n    image: busybox:1\n" }
      : args[0] === "image" && args[1] === "inspect"
        ? { exitCode: 0, stdout: "sha256:1\n" }
        : other;

/** A stack of one service `app_web` asking for `image`; `running(round)` says how many of 2 replicas run it at each inspection. */
function swarm(image: string, running: (round: number) => number, clock: { now(): Date }): (args: string[]) => Answer {
  let round = 0;
  let deployed = false; // the plan inspects the services before the deploy: rounds count from the deploy on
  return (args) => {
    const verb = args.slice(0, 2).join(" ");
    if (verb === "network ls") return { exitCode: 0, stdout: "" };
    if (verb === "image inspect") return { exitCode: 0, stdout: "sha256:1\n" };
    if (verb === "stack deploy") {
      deployed = true;
      return { exitCode: 0, output: "Updating service app_web (id: abc)" };
    }
    if (verb === "stack config") return { exitCode: 0, stdout: `services:\n  web:\n    image: ${image}\n` };
    if (verb === "stack services") return { exitCode: 0, stdout: "abc\n" };
    if (verb === "service inspect") {
      if (deployed) round += 1;
      const state = running(round) < 2 ? "updating" : "completed";
      const spec = { Name: "app_web", TaskTemplate: { ContainerSpec: { Image: image } }, Mode: { Replicated: { Replicas: 2 } } };
      return {
        exitCode: 0,
        stdout: JSON.stringify([{ ID: "abc", Spec: spec, UpdateStatus: { State: state, StartedAt: clock.now().toISOString() } }]),
      };
    }
    if (verb === "service ps") {
      const row = JSON.stringify({ Image: image, CurrentState: "Running 3 seconds ago", DesiredState: "Running" });
      return { exitCode: 0, stdout: Array.from({ length: running(round) }, () => row).join("\n") };
    }
    throw new Error(`unexpected docker ${args.join(" ")}`);
  };
}

describe("deployJob in virtual time", () => {
  it("retries a transient failure with exponential backoff, then fails naming the attempts", async () => {
    const clock = virtualClock();
    const docker = scriptedDocker(rendersThen({ exitCode: 1, output: DAEMON_DOWN }));
    const r = await deployJob({ docker, registry, log, policy, stack, job: makeJob(), clock });
    assert.equal(r.outcome, "failed");
    assert.equal(r.attempts.length, 4);
    assert.deepEqual(clock.sleeps, [2000, 4000, 8000]);
    assert.match(r.reason ?? "", /still failing after 4 attempts/);
  });

  it("caps the backoff at a minute", async () => {
    const clock = virtualClock();
    const docker = scriptedDocker(rendersThen({ exitCode: 1, output: DAEMON_DOWN }));
    const r = await deployJob({
      docker,
      registry,
      log,
      policy: { ...policy, retries: 5, retryBackoffMs: 20_000, deployTimeoutMs: 3_600_000 },
      stack,
      job: makeJob(),
      clock,
    });
    assert.equal(r.attempts.length, 6);
    assert.equal(MAX_BACKOFF_MS, 60_000, "a minute, as docs/reference.md says");
    assert.deepEqual(clock.sleeps, [20_000, 40_000, 60_000, 60_000, 60_000]);
  });

  it("does not retry a permanent failure", async () => {
    const clock = virtualClock();
    const docker = scriptedDocker(rendersThen({ exitCode: 1, output: 'service web: undefined network "nope"' }));
    const r = await deployJob({ docker, registry, log, policy, stack, job: makeJob(), clock });
    assert.equal(r.attempts.length, 1);
    assert.deepEqual(clock.sleeps, []);
    assert.match(r.reason ?? "", /permanent failure/);
  });

  it("fails when the deadline is reached mid-verification, with the services' state", async () => {
    const clock = virtualClock();
    const started = clock.now().getTime();
    const docker = scriptedDocker(swarm("web:2", () => 1, clock));
    const r = await deployJob({ docker, registry, log, policy: { ...policy, deployTimeoutMs: 30_000 }, stack, job: makeJob(), clock });
    assert.equal(r.outcome, "failed");
    assert.match(r.reason ?? "", /not converged within the deploy timeout: app_web: update in progress/);
    assert.deepEqual(
      r.services.map((s) => [s.name, s.running, s.desired]),
      [["app_web", 1, 2]],
    );
    const waited = clock.now().getTime() - started;
    assert.ok(waited > 30_000 && waited <= 32_000, `gave up ${waited} ms after the start, just past the 30 s deadline`);
    assert.ok(clock.sleeps.every((ms) => ms === 1000));
  });

  it("succeeds once the services converge before the deadline", async () => {
    const clock = virtualClock();
    const docker = scriptedDocker(swarm("web:2", (round) => (round < 5 ? 1 : 2), clock));
    const r = await deployJob({ docker, registry, log, policy: { ...policy, deployTimeoutMs: 30_000 }, stack, job: makeJob(), clock });
    assert.equal(r.outcome, "success", r.reason);
    assert.deepEqual(clock.sleeps, [1000, 1000, 1000, 1000]);
  });
});

describe("checkHealth in virtual time", () => {
  it("times out against a health URL that keeps answering 503, saying so", async () => {
    const srv = http.createServer((_req, res) => res.writeHead(503).end("starting"));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/health`;
    try {
      const clock = virtualClock();
      const why = await checkHealth(url, "a".repeat(40), 120_000, { clock });
      assert.equal(why, `${url} not healthy within 120 s: HTTP 503`);
      assert.equal(clock.sleeps.length, 120, "one probe a second for the whole timeout, in virtual time");
    } finally {
      srv.close();
    }
  });

  it("fails a deploy whose health URL never reports the commit", async () => {
    const srv = http.createServer((_req, res) => res.end(JSON.stringify({ commit: "b".repeat(40) })));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const healthUrl = `http://127.0.0.1:${(srv.address() as { port: number }).port}/health`;
    try {
      const clock = virtualClock();
      const docker = scriptedDocker(swarm("web:2", () => 2, clock));
      const job = makeJob({ sha: "a".repeat(40) });
      const r = await deployJob({
        docker,
        registry,
        log,
        policy: { ...policy, healthTimeoutMs: 30_000 },
        stack: { ...stack, healthUrl },
        job,
        clock,
      });
      assert.equal(r.outcome, "failed");
      assert.match(r.reason ?? "", /not healthy within 30 s: reports commit bbbbbbbbbbbb, not aaaaaaaaaaaa/);
    } finally {
      srv.close();
    }
  });
});
