// A throwaway Docker engine of a test's own: its own network namespace, socket, data root, exec root
// and pid file, started by scripts/test-env.sh as it would start this machine's. Tests that stop
// engines, leave swarms or remove images run against it, never against the host's engine.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { onEnd, type Ends } from "./cleanup.ts";
import { ROOT, pidAlive } from "./proc.ts";
import { docker, waitFor } from "./swarm.ts";

const run = promisify(execFile);

export interface OwnEngine {
  /** DOCKER_HOST for it. */
  host: string;
  /** What a command needs to use it, and test-env.sh to start it again: DOCKER_HOST, SWARMHOOK_DOCKERD*. */
  env: Record<string, string>;
  docker(args: string[]): Promise<string>;
  /** Stop its dockerd (SIGTERM, as a reboot would) and wait until it is gone. */
  stopEngine(): Promise<void>;
}

/** Start an engine of its own in a fresh network namespace (a one-node swarm and the demo image, by test-env.sh --demo). */
export async function startOwnEngine(t: Ends): Promise<OwnEngine> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "swarmhook-own-engine-"));
  const ns = `swarmhook-own-${process.pid}-${Math.random().toString(16).slice(2, 6)}`;
  await run("ip", ["netns", "add", ns]);
  await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
  const sock = path.join(dir, "docker.sock");
  const pidfile = path.join(dir, "docker.pid");
  const host = `unix://${sock}`;
  const env = {
    DOCKER_HOST: host,
    // nsenter, not `ip netns exec` (which remounts /sys and hides the cgroups from dockerd)
    SWARMHOOK_DOCKERD: `nsenter --net=/run/netns/${ns} dockerd --data-root ${dir}/data --exec-root ${dir}/exec --pidfile ${pidfile} -H ${host}`,
    SWARMHOOK_DOCKERD_PIDFILE: pidfile,
    SWARMHOOK_DOCKERD_LOG: path.join(dir, "dockerd.log"),
  };
  const stopEngine = async () => {
    const pid = Number((await readFile(pidfile, "utf8").catch(() => "")).trim());
    if (!pid) return;
    process.kill(pid, "SIGTERM");
    await waitFor("the engine of its own exited", async () => (pidAlive(pid) ? undefined : true), 90_000, 250);
  };
  onEnd(t, async () => {
    await stopEngine().catch(() => undefined);
    await run("ip", ["netns", "del", ns]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  });
  await run("bash", [path.join(ROOT, "scripts", "test-env.sh"), "--demo"], { env: { ...process.env, ...env }, timeout: 300_000 });
  return { host, env, docker: (args) => docker(args, { host }), stopEngine };
}

/** What a test must leave as it was on the host's own engine: its dockerd, its swarm, its images. */
export async function hostEngineState(): Promise<string> {
  const pid = (await readFile("/var/run/docker.pid", "utf8").catch(() => "none")).trim();
  const swarm = await docker(["info", "-f", "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}"], { env: { DOCKER_HOST: "" } });
  const images = (await docker(["images", "-q", "--no-trunc"], { env: { DOCKER_HOST: "" } })).split("\n").sort().join(",");
  return JSON.stringify({ pid, swarm, images });
}
