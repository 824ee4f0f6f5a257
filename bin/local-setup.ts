// What `swarmhook local` (npm start) needs before it serves: a Docker engine in swarm mode and the demo image.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import type { DockerRunner } from "../agent/docker.ts";
import { checkEngine } from "../agent/engine.ts";

export const DEMO_IMAGE = "swarmhook-test/busybox:latest";

/** Why this machine cannot run the demo yet, or null. */
async function missing(docker: DockerRunner): Promise<string | null> {
  const p = await checkEngine(docker);
  if (p) return p.problem;
  const image = await docker.capture(["image", "inspect", DEMO_IMAGE, "--format", "{{.Id}}"], { timeoutMs: 15_000 });
  return image.exitCode === 0 ? null : `the demo image ${DEMO_IMAGE} is missing`;
}

function runSetup(root: string): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn("bash", [path.join(root, "scripts", "test-env.sh"), "--demo"], { stdio: ["ignore", "inherit", "inherit"] });
    child.on("exit", (code) => resolve(code));
    child.on("error", () => resolve(null));
  });
}

/**
 * Make this machine ready for the demo, saying each step in one line: when the engine, the swarm or
 * the image is missing and this is root with apt, `scripts/test-env.sh --demo` sets them up. Where it
 * cannot (DOCKER_HOST names an engine that does not answer, not root, no apt) it returns at once with
 * one line naming what is missing and the command that fixes it.
 * @example
 * const problem = await prepareLocal({ root, env: process.env, docker: createDockerRunner(), say });
 * if (problem) { process.stderr.write(`${problem}\n`); process.exit(1); }
 */
export async function prepareLocal(o: {
  root: string;
  env: NodeJS.ProcessEnv;
  docker: DockerRunner;
  say: (line: string) => void;
}): Promise<string | null> {
  const before = await missing(o.docker);
  if (before === null) {
    o.say("swarmhook local: the Docker engine, a swarm manager and the demo image are here");
    return null;
  }
  // DOCKER_HOST with SWARMHOOK_DOCKERD: an engine of one's own that test-env.sh knows how to start
  if (o.env.DOCKER_HOST && !o.env.SWARMHOOK_DOCKERD) {
    return `swarmhook local: ${before} (DOCKER_HOST=${o.env.DOCKER_HOST}). Start that engine, or unset DOCKER_HOST to use this machine's own (sudo bash scripts/test-env.sh --demo sets one up)`;
  }
  if (process.getuid?.() !== 0) return `swarmhook local: ${before}. Set this machine up first: sudo bash scripts/test-env.sh --demo`;
  if (!existsSync("/usr/bin/apt-get"))
    return `swarmhook local: ${before}, and there is no apt-get to install Docker with: install Docker Engine and a Docker CLI >= 26, then run this again`;
  o.say(`swarmhook local: ${before}: setting this machine up (scripts/test-env.sh --demo)`);
  const code = await runSetup(o.root);
  if (code !== 0)
    return `swarmhook local: the set-up failed (exit ${code ?? "none"}; its lines are above): fix what it names, then run npm start again`;
  const after = await missing(o.docker);
  return after === null ? null : `swarmhook local: still ${after} after the set-up`;
}
