// bench/images: push → verified deploy with images resolved first (the real watcher: the registry
// asked for each tag's digest, the stack rendered again pinned to it) against the same deploy without
// that step (the baseline: DIGEST_POLICY=warn and a registry client that answers at once that it cannot
// tell, so the stack deploys by tag and Docker resolves it while it deploys, as before images first).
// Both watchers deploy from the same authenticated registry (htpasswd, docker login) to the real
// one-node swarm, a new build each round, in alternating rounds. Target: resolution adds <= 10 %.
// Run as: npm run bench:images (builds first; needs scripts/test-env.sh's dockerd, swarm and images).
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { createAgent, type Agent } from "../../agent/agent.ts";
import { loadAgentConfig } from "../../agent/config.ts";
import { createDockerRunner } from "../../agent/docker.ts";
import { dockerCredentials } from "../../agent/prepare/credentials.ts";
import type { RegistryClient } from "../../agent/prepare/registry.ts";
import { ensureSpool, openSpool, publishJob } from "../../spool/index.ts";
import { waitForRecord } from "../../test/helpers/agent.ts";
import { makeJob } from "../../test/helpers/jobs.ts";
import { WEB_REPO, buildWebImage } from "../../test/helpers/images.ts";
import { pushTo, startAuthRegistry } from "../../test/helpers/registry.ts";
import { docker, removeStack } from "../../test/helpers/swarm.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const ROOT = path.join(import.meta.dirname, "..", "..", "..");
const STACK_FILE = path.join(ROOT, "test", "fixtures", "stacks", "registry-auth-web.yaml");
const silent = pino({ level: "silent" });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** The baseline's registry: no answer to give, at once (deploy by tag, as before images first). */
const noResolution: RegistryClient = {
  lookup: async (ref) => ({ kind: "unreachable", detail: `${ref.registry}: not asked (baseline)` }),
};

const reg = await startAuthRegistry("htpasswd");
const shas = Array.from({ length: ROUNDS * 2 + 2 }, () => randomBytes(20).toString("hex"));
process.stdout.write(`bench/images: building and pushing ${shas.length} images to ${reg.addr} (htpasswd)\n`);
for (const sha of shas) {
  await buildWebImage(sha);
  await pushTo(reg, `${WEB_REPO}:${sha}`, "acme/web", sha);
}

interface Side {
  name: "resolved" | "baseline";
  stack: string;
  root: string;
  agent: Agent;
  times: number[];
}

async function side(name: Side["name"]): Promise<Side> {
  const root = mkdtempSync(path.join(os.tmpdir(), `swarmhook-bench-images-${name}-`));
  await ensureSpool(openSpool(root));
  const stack = `bimg${name[0]}${randomBytes(2).toString("hex")}`;
  const config = loadAgentConfig({
    SPOOL_DIR: root,
    STATE_DIR: `${root}.state`,
    STACK_FILE,
    STACK_NAME: stack,
    STACK_ENV: "REGISTRY",
    REGISTRY: reg.addr,
    POLL_INTERVAL_MS: "100",
    DEPLOY_TIMEOUT_S: "120",
    IMAGE_WAIT_S: "0",
    ON_FAILURE: "stay",
    DIGEST_POLICY: name === "baseline" ? "warn" : "auto",
  });
  const agent = createAgent({
    config,
    spool: openSpool(root),
    docker: createDockerRunner({ env: { DOCKER_CONFIG: reg.dockerConfig } }),
    log: silent,
    credentials: dockerCredentials({ DOCKER_CONFIG: reg.dockerConfig }),
    ...(name === "baseline" ? { registry: noResolution } : {}),
  });
  await agent.start();
  return { name, stack, root, agent, times: [] };
}

/** Publish a push of `sha` and wait for its record: push → verified deploy, in ms. */
async function deploy(s: Side, sha: string): Promise<number> {
  const job = makeJob({ sha, repository: "acme/app", sender: "bench" });
  const started = performance.now();
  await publishJob(openSpool(s.root), job);
  const rec = await waitForRecord(s.root, job.deliveryId, 180_000);
  const took = performance.now() - started;
  if (rec.outcome !== "success") throw new Error(`${s.name}: ${rec.outcome} ${rec.reason ?? ""}`);
  const spec = await docker(["service", "inspect", `${s.stack}_web`, "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);
  if (s.name === "resolved" && !spec.includes("@sha256:")) throw new Error(`resolved side not pinned: ${spec}`);
  return took;
}

const sides = [await side("resolved"), await side("baseline")];
try {
  let next = 0;
  for (const s of sides) await deploy(s, shas[next++] as string); // create the services: not measured
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const s of order) s.times.push(await deploy(s, shas[next++] as string));
  }
  const [resolved, baseline] = sides as [Side, Side];
  for (const s of sides)
    process.stdout.write(
      `  ${s.name.padEnd(9)} push → verified deploy: median ${(median(s.times) / 1000).toFixed(2)} s over ${s.times.length} (${s.times.map((t) => (t / 1000).toFixed(2)).join(" ")})\n`,
    );
  const ratio = median(resolved.times) / median(baseline.times);
  process.stdout.write(
    `  resolution's cost: ${ratio.toFixed(2)}x the deploy without it (target <= 1.10)  ${ratio <= 1.1 ? "OK" : "MISS"}\n`,
  );
} finally {
  for (const s of sides) {
    await s.agent.stop();
    await removeStack(s.stack);
    rmSync(s.root, { recursive: true, force: true });
    rmSync(`${s.root}.state`, { recursive: true, force: true });
  }
  await reg.remove();
}
