import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { onEnd, type Ends } from "./cleanup.ts";

const run = promisify(execFile);
const SCRIPT = path.join(import.meta.dirname, "..", "..", "scripts", "netns-swarm.sh");

export const NODES = ["kvm2", "kvm4", "kvm8"] as const;
export type NodeName = (typeof NODES)[number];

/** The docker socket of one node of the three-node netns swarm. */
export function nodeHost(node: NodeName): string {
  return `unix:///run/swarmhook-netns/${node}/docker.sock`;
}

/** Run the docker CLI (argv, never a shell string) against the host daemon or one netns node; `input` goes to its stdin. */
export async function docker(args: string[], opts: { host?: string; input?: string; env?: Record<string, string> } = {}): Promise<string> {
  const argv = opts.host ? ["-H", opts.host, ...args] : args;
  const p = run("docker", argv, { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...opts.env } });
  if (opts.input !== undefined) p.child.stdin?.end(opts.input);
  const { stdout } = await p;
  return stdout.trim();
}

export async function netnsSwarm(verb: "up" | "down" | "status", env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run("bash", [SCRIPT, verb], { env: { ...process.env, ...env } });
  return stdout;
}

/** Poll `check` until it returns a value or `timeoutMs` passes; the last error is kept for the message. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

/** Copy an image from the host's daemon into every netns node, or those named (no registry: docker save | docker load). */
export async function loadIntoNodes(image: string, nodes: readonly NodeName[] = NODES): Promise<void> {
  for (const node of nodes) {
    await run("bash", ["-o", "pipefail", "-c", 'docker save "$1" | docker -H "$2" load -q >/dev/null', "load", image, nodeHost(node)]);
  }
}

/** A stack name no other test uses, removed from the swarm when the test ends. */
export function uniqueStack(t: Ends, prefix = "shtest"): string {
  const name = `${prefix}-${Math.random().toString(16).slice(2, 8)}`;
  onEnd(t, () => removeStack(name));
  return name;
}

/** Remove a stack and wait until its services are gone (a later stack of the same name starts clean). */
export async function removeStack(name: string, host?: string): Promise<void> {
  await docker(["stack", "rm", name], { host }).catch(() => undefined);
  await waitFor(
    `stack ${name} removed`,
    async () => ((await docker(["stack", "services", name, "-q"], { host }).catch(() => "")) === "" ? true : undefined),
    60_000,
    250,
  ).catch(() => undefined);
}

/** A service made by hand under a stack's namespace (not in its stack file), as an operator's `docker service create` would. */
export async function createByHand(stack: string, name: string): Promise<void> {
  await docker([
    "service",
    "create",
    "--detach",
    "--name",
    name,
    "--label",
    `com.docker.stack.namespace=${stack}`,
    "swarmhook-test/busybox",
    "sleep",
    "3600",
  ]);
}
