import type { DockerRunner } from "./docker.ts";
import { decisiveLine } from "./docker-lines.ts";

/** The oldest Docker CLI the watcher works with: `stack deploy --detach=false` and `stack config` came in 26. */
export const MIN_CLI_MAJOR = 26;

/** The major version of a Docker CLI version string ("28.2.2" → 28), 0 when there is none. */
export const cliMajor = (version: string): number => Number(/^(\d+)\./.exec(version)?.[1] ?? 0);

/** Why this node cannot deploy now, and the command that fixes it. */
export interface EngineProblem {
  problem: string;
  fix: string;
}

/**
 * Can this node deploy? The Docker CLI is there and recent enough, the engine answers, and the node
 * is a swarm manager. Null when all hold. The watcher asks before it claims: while it cannot deploy,
 * jobs wait in new/ instead of failing.
 * @example
 * const p = await checkEngine(docker); if (p) log.warn(p, "waiting for the Docker engine");
 */
export async function checkEngine(docker: DockerRunner): Promise<EngineProblem | null> {
  const v = await docker.capture(["version", "--format", "{{.Client.Version}}|{{.Server.Version}}"], { timeoutMs: 15_000 });
  if (v.spawnError)
    return {
      problem: `the docker CLI cannot be run: ${v.spawnError}`,
      fix: "install a Docker CLI >= 26 on PATH (docs/install.md, step 0: Software)",
    };
  const [client = "", server = ""] = v.stdout.trim().split("\n")[0]?.split("|") ?? [];
  const major = cliMajor(client);
  if (major > 0 && major < MIN_CLI_MAJOR) {
    return {
      problem: `the docker CLI is ${client}, older than ${MIN_CLI_MAJOR}`,
      fix: "install a Docker CLI >= 26 (Debian 13's docker.io, or docker-ce-cli)",
    };
  }
  if (v.exitCode !== 0 || server === "" || v.timedOut) {
    const why = decisiveLine(v.outputTail) ?? "the Docker engine does not answer";
    return { problem: why, fix: "systemctl start docker (and check DOCKER_HOST if it is set)" };
  }
  const info = await docker.capture(["info", "--format", "{{.Swarm.LocalNodeState}}|{{.Swarm.ControlAvailable}}"], { timeoutMs: 15_000 });
  const [state = "", control = ""] = info.stdout.trim().split("|");
  if (info.exitCode !== 0)
    return { problem: decisiveLine(info.outputTail) ?? "docker info failed", fix: "docker info (as the watcher's user)" };
  if (state !== "active") {
    return {
      problem: `this node is not in a swarm (state ${state || "unknown"})`,
      fix: "docker swarm init --advertise-addr <wg0 address> (runbook, step 4)",
    };
  }
  if (control !== "true")
    return {
      problem: "this node is a swarm worker, not a manager",
      fix: "run the watcher on a manager (kvm8): docker node promote <node>",
    };
  return null;
}
