import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import type { Job, Release } from "../../spool/index.ts";
import type { DockerRunner, RunOptions } from "../docker.ts";
import type { AgeKeys } from "./age-keys.ts";
import { PINNED } from "./image-ref.ts";
import { SecretFileError, decryptFile, splitSelector } from "./secrets.ts";

/** A stack file as one deploy uses it: the files handed to Docker, what each service asks for, and what to record. */
export interface Rendered {
  /** `-c` files in order: the stack file, then what this deploy lays over it (a rollback's images, versioned configs). */
  files: string[];
  /** Full service name (`app_web`) → the image the deploy asks for. */
  asked: Map<string, string>;
  /** sha256 of the stack file as `docker stack config` renders it for this commit (without a rollback's images). */
  stackFileHash: string;
  warnings: string[];
  /** Configs and secrets named by their content for this deploy (stacks from git; encrypted files on any stack). */
  objects: VersionedObject[];
  /** Decrypted configs and secrets to create (from stdin) before the deploy; the overlay names them external. */
  create: { kind: "config" | "secret"; name: string; data: Buffer }[];
  /** Secret versions a rollback's release names, laid over as external: each must still exist. */
  restored: string[];
  /** `docker stack config` of `files` together, parsed: what the deploy asks for (the plan compares it). */
  doc: unknown;
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

/**
 * The environment a stack file is rendered with for one commit: the stack's own variables (STACK_ENV
 * and its `env:`, read once at start) and IMAGE_TAG/DEPLOY_SHA. Nothing else of the watcher's.
 */
export const deployEnv = (sha: string, vars: Readonly<Record<string, string>> = {}): Record<string, string> => ({
  ...vars,
  IMAGE_TAG: sha,
  DEPLOY_SHA: sha,
});

type RenderedDoc = {
  services?: Record<string, { image?: string }>;
  configs?: Record<string, { file?: string; name?: string; external?: unknown }>;
  secrets?: Record<string, { file?: string; name?: string; external?: unknown }>;
};

/** A Swarm config or secret named by its content, so a changed file is a new object (they are immutable). */
export interface VersionedObject {
  kind: "config" | "secret";
  key: string;
  name: string;
}

/** The prefix every version of one stack's config or secret shares: `<stack>_<key>_`. */
export const versionPrefix = (stack: string, key: string): string => `${stack}_${key}_`;

/** How `versionObjects` treats the files a stack's configs and secrets come from. */
interface ObjectOptions {
  /** Name plain files by their content too (stacks from git); encrypted files always are. */
  plain: boolean;
  keys: () => Promise<AgeKeys>;
  /** A rollback's release: its secret versions are put back by name, never made again. */
  restore?: readonly { key: string; name: string }[] | undefined;
}

/**
 * Name every config and secret defined from a file (and not external, not named by hand) after its
 * content: `<stack>_<key>_<12 hex>`. A plain file (stacks from git): the first 12 hex of its sha256,
 * and Docker creates it from the file. An encrypted file (SOPS or age; `file.sops.yaml#key` selects
 * one key): decrypted here, named by a hash keyed with the watcher's age identities (a low-entropy
 * value's plain hash would give it away), created by the watcher from stdin and laid over as
 * external. A rollback lays its release's secret versions over as external.
 */
async function versionObjects(doc: RenderedDoc, stackName: string, o: ObjectOptions) {
  const overlay: { configs?: Record<string, object>; secrets?: Record<string, object> } = {};
  const objects: VersionedObject[] = [];
  const create: Rendered["create"] = [];
  const restored: string[] = [];
  for (const [kind, group] of [
    ["config", "configs"],
    ["secret", "secrets"],
  ] as const) {
    for (const [key, def] of Object.entries(doc[group] ?? {})) {
      if (!def.file || def.name || def.external) continue;
      const recorded = kind === "secret" ? o.restore?.find((s) => s.key === key) : undefined;
      if (recorded) {
        (overlay[group] ??= {})[key] = { name: recorded.name, external: true };
        objects.push({ kind, key, name: recorded.name });
        restored.push(recorded.name);
        continue;
      }
      const { file, select } = await splitSelector(def.file);
      const plain = await decryptFile(file, o.keys, select).catch((err: unknown) => {
        // a file that cannot be decrypted is the commit's fault (invalid); one that cannot be read is not
        const said = `${kind} ${key} (${path.basename(def.file ?? "")}): ${(err as Error).message}`;
        throw err instanceof SecretFileError ? new SecretFileError(said) : new Error(said);
      });
      if (plain) {
        const name = `${versionPrefix(stackName, key)}${(await o.keys()).mac(plain).slice(0, 12)}`;
        (overlay[group] ??= {})[key] = { name, external: true };
        objects.push({ kind, key, name });
        create.push({ kind, name, data: plain });
        continue;
      }
      if (!o.plain) continue;
      const hash = createHash("sha256")
        .update(await fs.readFile(def.file))
        .digest("hex")
        .slice(0, 12);
      const name = `${versionPrefix(stackName, key)}${hash}`;
      (overlay[group] ??= {})[key] = { name, file: def.file };
      objects.push({ kind, key, name });
    }
  }
  return { overlay, objects, create, restored };
}

/** For a rollback: the recorded image of each service, over the stack file; what cannot be laid over is said. */
function rollbackImages(
  job: Extract<Job, { kind: "rollback" }>,
  services: Record<string, unknown>,
  stackName: string,
  asked: Map<string, string>,
  stackFileHash: string,
) {
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
  return { overlay, warnings };
}

/**
 * Render the stack for `job` with `docker stack config` (Docker's own interpolation and merge). What
 * the deploy changes is laid over the stack file by a second compose file in a private temp
 * directory (`-c stack.yaml -c overlay.yaml`): for a rollback, the recorded image of each service, so
 * the deploy asks for exactly those digests (what cannot be laid over is said in `warnings`); the
 * digests resolved before the deploy (`images`); with `versionObjects` (stacks from git), configs
 * and secrets named by their content.
 * @example
 * const r = await renderStack(docker, "/opt/app/stack/stack.yaml", "app", job);
 * try { await docker.run(["stack", "deploy", ...r.files.flatMap((f) => ["-c", f]), "app"]); } finally { await r.cleanup(); }
 */
export async function renderStack(
  docker: DockerRunner,
  stackFile: string,
  stackName: string,
  job: Job,
  o: {
    versionObjects?: boolean;
    /** The watcher's age identities, read when an encrypted file needs them (SOPS_AGE_KEY_FILE). */
    keys?: () => Promise<AgeKeys>;
    vars?: Readonly<Record<string, string>>;
    /** Service key → the image to deploy instead (the digests resolved before the deploy), over everything else. */
    images?: ReadonlyMap<string, string>;
  } = {},
): Promise<Rendered> {
  const env = deployEnv(job.sha, o.vars);
  const text = await query(docker, ["stack", "config", "-c", stackFile], env);
  const stackFileHash = `sha256:${createHash("sha256").update(text).digest("hex")}`;
  const doc = (parseYaml(text) ?? {}) as RenderedDoc;
  const services = doc.services ?? {};
  const asked = new Map<string, string>();
  for (const [svc, def] of Object.entries(services)) if (def.image) asked.set(`${stackName}_${svc}`, def.image);
  const images: { overlay: Record<string, { image: string }>; warnings: string[] } =
    job.kind === "rollback" ? rollbackImages(job, services, stackName, asked, stackFileHash) : { overlay: {}, warnings: [] };
  for (const [svc, image] of o.images ?? []) {
    if (!(svc in services) || asked.get(`${stackName}_${svc}`) === image) continue;
    images.overlay[svc] = { image };
    asked.set(`${stackName}_${svc}`, image);
  }
  const versioned = await versionObjects(doc, stackName, {
    plain: o.versionObjects === true,
    keys: o.keys ?? (() => Promise.reject(new SecretFileError("no age key was given to decrypt it with"))),
    restore: job.kind === "rollback" ? job.release.secrets : undefined,
  });
  const overlay = { ...(Object.keys(images.overlay).length > 0 ? { services: images.overlay } : {}), ...versioned.overlay };
  const base = {
    asked,
    stackFileHash,
    warnings: images.warnings,
    objects: versioned.objects,
    create: versioned.create,
    restored: versioned.restored,
  };
  if (Object.keys(overlay).length === 0) return { ...base, doc, files: [stackFile], cleanup: async () => undefined };
  // Docker merges only files of one compose version: the overlay says the stack file's own
  const { version } = (parseYaml(await fs.readFile(stackFile, "utf8")) ?? {}) as { version?: unknown };
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "swarmhook-overlay-"));
  const overlayFile = path.join(dir, "overlay.yaml");
  await fs.writeFile(overlayFile, stringifyYaml({ ...(version === undefined ? {} : { version }), ...overlay }), { mode: 0o600 });
  const cleanup = () => fs.rm(dir, { recursive: true, force: true });
  const merged = await query(docker, ["stack", "config", "-c", stackFile, "-c", overlayFile], env).catch(async (err: unknown) => {
    await cleanup();
    throw err;
  });
  return { ...base, doc: parseYaml(merged) ?? {}, files: [stackFile, overlayFile], cleanup };
}

/** The release a converged stack runs: each service's image as its spec holds it (with the digest Swarm pinned, when it could). */
export function releaseOf(stackName: string, specImages: ReadonlyMap<string, string>, stackFileHash: string, resolvedAt?: string): Release {
  const images = [...specImages]
    .map(([name, image]) => ({
      service: name.startsWith(`${stackName}_`) ? name.slice(stackName.length + 1) : name,
      image,
      pinned: PINNED.test(image),
    }))
    .sort((a, b) => a.service.localeCompare(b.service));
  return { stackFileHash, images, ...(resolvedAt ? { resolvedAt } : {}) };
}

/**
 * After a deploy succeeded: remove versions of its content-named configs and secrets beyond the
 * newest `keep` (the one in use counts), oldest first. One still used by a service is refused by
 * Docker and left. Returns the names removed.
 */
export async function pruneObjectVersions(
  docker: DockerRunner,
  stackName: string,
  objects: readonly VersionedObject[],
  keep: number,
): Promise<string[]> {
  const removed: string[] = [];
  for (const kind of ["config", "secret"] as const) {
    const mine = objects.filter((o) => o.kind === kind);
    if (mine.length === 0) continue;
    const listed = await query(
      docker,
      [kind, "ls", "--filter", `label=com.docker.stack.namespace=${stackName}`, "--format", "{{.Name}}"],
      {},
    );
    const names = listed.split("\n").filter(Boolean);
    if (names.length === 0) continue;
    const created = new Map(
      (await query(docker, [kind, "inspect", "--format", "{{.Spec.Name}} {{.CreatedAt}}", ...names], {}))
        .split("\n")
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf(" ")), Date.parse(l.slice(l.indexOf(" ") + 1))] as const),
    );
    for (const o of mine) {
      const prefix = versionPrefix(stackName, o.key);
      const older = names
        .filter((n) => n !== o.name && n.startsWith(prefix) && /^[0-9a-f]{12}$/.test(n.slice(prefix.length)))
        .sort((a, b) => (created.get(b) ?? 0) - (created.get(a) ?? 0));
      for (const name of older.slice(Math.max(0, keep - 1))) {
        const r = await docker.capture([kind, "rm", name], { timeoutMs: 30_000 });
        if (r.exitCode === 0) removed.push(name);
      }
    }
  }
  return removed;
}
