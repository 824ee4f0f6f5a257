import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import type { Job, Release } from "../spool/index.ts";
import type { DockerRunner, RunOptions } from "./docker.ts";

/** A stack file as one deploy uses it: the files handed to Docker, what each service asks for, and what to record. */
export interface Rendered {
  /** `-c` files in order: the stack file, then (for a rollback) the recorded images over it. */
  files: string[];
  /** Full service name (`app_web`) → the image the deploy asks for. */
  asked: Map<string, string>;
  /** sha256 of the stack file as `docker stack config` renders it for this commit (without a rollback's images). */
  stackFileHash: string;
  warnings: string[];
  /** Remove the per-job files; safe to call twice. */
  cleanup(): Promise<void>;
}

/** A docker query that must succeed; its failure is an inspection error, never a success. */
export async function query(docker: DockerRunner, args: string[], env: RunOptions["env"]): Promise<string> {
  const r = await docker.capture(args, { env, timeoutMs: 30_000 });
  if (r.exitCode !== 0)
    throw new Error(
      `${args.slice(0, 2).join(" ")} failed (exit ${r.exitCode ?? "none"}): ${r.spawnError ?? r.outputTail.split("\n").slice(-3).join(" ")}`,
    );
  return r.stdout;
}

/** The environment a stack file is rendered with for one commit. */
export const deployEnv = (sha: string): Record<string, string> => ({ IMAGE_TAG: sha, DEPLOY_SHA: sha });

/**
 * Render the stack for `job` with `docker stack config` (Docker's own interpolation and merge). For
 * a rollback, the recorded image of each service is laid over the stack file by a second compose
 * file in a private temp directory (`-c stack.yaml -c images.yaml`), so the deploy asks for exactly
 * those digests; services the stack no longer has, or had no recorded image, are said in `warnings`.
 * @example
 * const r = await renderStack(docker, "/opt/app/stack/stack.yaml", "app", job);
 * try { await docker.run(["stack", "deploy", ...r.files.flatMap((f) => ["-c", f]), "app"]); } finally { await r.cleanup(); }
 */
export async function renderStack(docker: DockerRunner, stackFile: string, stackName: string, job: Job): Promise<Rendered> {
  const env = deployEnv(job.sha);
  const text = await query(docker, ["stack", "config", "-c", stackFile], env);
  const stackFileHash = `sha256:${createHash("sha256").update(text).digest("hex")}`;
  const services = (parseYaml(text) as { services?: Record<string, { image?: string }> }).services ?? {};
  const asked = new Map<string, string>();
  for (const [svc, def] of Object.entries(services)) if (def.image) asked.set(`${stackName}_${svc}`, def.image);
  if (job.kind !== "rollback") return { files: [stackFile], asked, stackFileHash, warnings: [], cleanup: async () => undefined };

  const warnings: string[] = [];
  const { release } = job;
  if (release.stackFileHash !== stackFileHash)
    warnings.push("the stack file differs from the one deployed then: the recorded images run with today's stack file");
  const overlay: Record<string, { image: string }> = {};
  for (const { service, image } of release.images) {
    if (!(service in services)) warnings.push(`${service}: no longer in the stack file; not deployed`);
    else {
      overlay[service] = { image };
      asked.set(`${stackName}_${service}`, image);
    }
  }
  for (const svc of Object.keys(services)) {
    if (!release.images.some((i) => i.service === svc)) warnings.push(`${svc}: no image recorded for it; deployed by tag ${job.sha}`);
  }
  const unpinned = release.images.filter((i) => !i.pinned).map((i) => i.service);
  if (unpinned.length > 0) warnings.push(`no registry digest was recorded for ${unpinned.join(", ")}: deployed by the reference recorded`);
  // Docker merges only files of one compose version: the overlay says the stack file's own
  const { version } = (parseYaml(await fs.readFile(stackFile, "utf8")) ?? {}) as { version?: unknown };
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-rollback-"));
  const overlayFile = path.join(dir, "images.yaml");
  await fs.writeFile(overlayFile, stringifyYaml({ ...(version === undefined ? {} : { version }), services: overlay }), { mode: 0o600 });
  const cleanup = () => fs.rm(dir, { recursive: true, force: true });
  return { files: [stackFile, overlayFile], asked, stackFileHash, warnings, cleanup };
}

/** The release a converged stack runs: each service's image as its spec holds it (with the digest Swarm pinned, when it could). */
export function releaseOf(stackName: string, specImages: ReadonlyMap<string, string>, stackFileHash: string): Release {
  const images = [...specImages]
    .map(([name, image]) => ({
      service: name.startsWith(`${stackName}_`) ? name.slice(stackName.length + 1) : name,
      image,
      pinned: /@sha256:[0-9a-f]{64}$/.test(image),
    }))
    .sort((a, b) => a.service.localeCompare(b.service));
  return { stackFileHash, images };
}
