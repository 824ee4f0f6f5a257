import type { DeployDeps, DeployResult } from "../deploying.ts";
import { resolveImages, type ImageDeps, type ImageResolution, type ResolvedImage } from "./images.ts";
import { planStack, type Plan } from "./plan.ts";
import type { DockerRunner } from "../docker.ts";
import { deployEnv, renderStack, type Rendered } from "./render.ts";
import { ageKeysOnDemand, decryptEnvFiles, SecretFileError, type DecryptedEnv } from "./secrets.ts";
import { policyRefusals } from "./stack-policy.ts";
import { jobWarnings, stagesOf, type Stage } from "./stages.ts";

/** What the prepare step hands on: the rendered stack (its temp files until cleanup), its plan, the deploy's clock marks. */
export interface Prepared {
  rendered: Rendered;
  plan: Plan | undefined;
  /** The stack's stages, lowest first (stagesOf); null when it deploys all at once. */
  stages: Stage[] | null;
  since: Date;
  deadline: number;
  /** What every docker command of this deploy is run with: IMAGE_TAG, DEPLOY_SHA and the stack's variables. */
  env: Record<string, string>;
  /** When every image was resolved to the digest the deploy asks for (before anything changed). */
  resolvedAt: string;
  /** Service → variables from encrypted env_files (their values are redacted from what is kept). */
  secretEnv: DecryptedEnv["secretEnv"];
  /** Remove the decrypted env_files: right after `docker stack deploy`, and whatever else happens (safe twice). */
  removePlaintext(): Promise<number>;
}

const before = (outcome: DeployResult["outcome"], reason: string): DeployResult => ({
  outcome,
  reason,
  attempts: [],
  services: [],
  warnings: [],
  applied: false,
});

/**
 * Render the job's stack (a rollback's images laid over it), refuse what its policy forbids, and plan
 * it against what runs. Nothing here changes the cluster. Ends the deploy (`failed`, `invalid`) when
 * the stack cannot be rendered or is refused; the caller cleans the rendered files up otherwise.
 */
export async function prepareRelease(d: DeployDeps): Promise<Prepared | DeployResult> {
  const keys = ageKeysOnDemand(d.policy.ageKeyFile);
  let decrypted: DecryptedEnv;
  try {
    decrypted = await decryptEnvFiles(d.stack.file, d.checkout ?? null, keys, d.log);
  } catch (err) {
    if (err instanceof SecretFileError) return before("invalid", err.message);
    return before("failed", `the stack file could not be read: ${(err as Error).message}`);
  }
  const prepared = await prepareDecrypted(d, keys);
  if ("outcome" in prepared) await decrypted.removePlaintext();
  return "outcome" in prepared ? prepared : { ...prepared, secretEnv: decrypted.secretEnv, removePlaintext: decrypted.removePlaintext };
}

async function prepareDecrypted(
  d: DeployDeps,
  keys: ReturnType<typeof ageKeysOnDemand>,
): Promise<Omit<Prepared, "secretEnv" | "removePlaintext"> | DeployResult> {
  let rendered: Rendered;
  try {
    rendered = await renderStack(d.docker, d.stack.file, d.stack.name, d.job, opts(d, keys));
  } catch (err) {
    if (err instanceof SecretFileError) return before("invalid", err.message);
    return before("failed", `the stack file could not be rendered: ${(err as Error).message}`);
  }
  let stages: Stage[] | null;
  try {
    stages = stagesOf(rendered.doc, d.policy.deployTimeoutMs);
  } catch (err) {
    await rendered.cleanup();
    return before("invalid", (err as Error).message);
  }
  const refused = policyRefusals(rendered.doc, d.stack.policy);
  const gone = refused.length > 0 ? [] : await missingSecrets(d.docker, rendered.restored);
  if (refused.length > 0 || gone.length > 0) {
    await rendered.cleanup();
    if (gone.length > 0)
      return before(
        "failed",
        `refused before anything changed: the release's secret ${gone.join(", ")} ${gone.length > 1 ? "are" : "is"} gone (KEEP_OBJECT_VERSIONS=${d.policy.keepObjectVersions ?? 3} keeps that many versions of each)`,
      );
    return before("invalid", `refused by the stack's policy: ${refused.join("; ")}`);
  }
  const pinnedRender = await pinImages(d, rendered, keys);
  if ("outcome" in pinnedRender) return pinnedRender;
  rendered = pinnedRender.rendered;
  rendered.warnings.push(...jobWarnings(rendered.doc));
  for (const w of rendered.warnings) d.log.warn(w);
  const startedAt = d.clock.now().getTime();
  const env = deployEnv(d.job.sha, d.stack.vars);
  const plan = await planStack(d.docker, d.stack.name, rendered.doc, env).catch((err: unknown) => {
    d.log.warn({ err }, "could not plan the deploy: deploying without a plan");
    return undefined;
  });
  if (plan) d.log.info({ plan: plan.summary }, "plan");
  return {
    rendered,
    plan,
    stages,
    since: new Date(startedAt - 1000),
    deadline: startedAt + d.policy.deployTimeoutMs,
    env,
    resolvedAt: pinnedRender.resolvedAt,
  };
}

/** The secret versions of `names` that Docker no longer has (pruned beyond KEEP_OBJECT_VERSIONS, or removed by hand). */
async function missingSecrets(docker: DockerRunner, names: readonly string[]): Promise<string[]> {
  const gone: string[] = [];
  for (const name of names) {
    const r = await docker.capture(["secret", "inspect", "--format", "{{.Spec.Name}}", name], { timeoutMs: 30_000 });
    if (r.exitCode !== 0) gone.push(name);
  }
  return gone;
}

/**
 * The images-first step for a deploy: resolveImages with the deploy's hooks (a newer job ends a wait;
 * the wait is reported), then pinRendered. Ends the deploy, with `rendered` cleaned up, when an image
 * cannot be had or a newer job took over the wait.
 */
async function pinImages(
  d: DeployDeps,
  rendered: Rendered,
  keys: ReturnType<typeof ageKeysOnDemand>,
): Promise<{ rendered: Rendered; resolvedAt: string } | DeployResult> {
  const waitStarted = d.clock.now().getTime();
  let waited = false;
  const deps: ImageDeps = {
    docker: d.docker,
    registry: d.registry,
    log: d.log,
    clock: d.clock,
    policy: d.policy,
    newer: d.hooks?.newer,
    stopping: d.hooks?.stopping,
    onWaiting: async (images) => {
      waited = true;
      await d.hooks?.onWaiting?.(images);
    },
  };
  const r = await pinRendered(deps, rendered, (images) =>
    renderStack(d.docker, d.stack.file, d.stack.name, d.job, { ...opts(d, keys), images }),
  );
  if (r.status === "failed") return before("failed", r.reason);
  if (r.status === "interrupted") return before("interrupted", "the watcher stopped while the job waited for its images");
  if (r.status === "superseded")
    return { ...before("superseded", `a newer delivery (${r.by}) arrived while this one waited for its images`), supersededBy: r.by };
  await d.hooks?.onResolved?.(waited ? d.clock.now().getTime() - waitStarted : 0);
  return { rendered: r.rendered, resolvedAt: r.resolvedAt };
}

/**
 * Resolve every service image of `rendered` (resolveImages), then render the stack again with the
 * digests laid over it (`render(pins)`), so the deploy asks for exactly those builds. The warnings of
 * images left unpinned are added to the rendering's. `rendered` is cleaned up unless it is returned.
 * @example
 * const r = await pinRendered(deps, rendered, (images) => renderStack(docker, file, "app", job, { images }));
 * if (r.status === "resolved") deploy(r.rendered.files);
 */
export async function pinRendered(
  deps: ImageDeps,
  rendered: Rendered,
  render: (images: ReadonlyMap<string, string>) => Promise<Rendered>,
): Promise<
  Exclude<ImageResolution, { status: "resolved" }> | { status: "resolved"; rendered: Rendered; resolvedAt: string; images: ResolvedImage[] }
> {
  const services = (rendered.doc as { services?: Record<string, { image?: string }> }).services ?? {};
  const wanted = Object.entries(services).flatMap(([service, def]) => (def.image ? [{ service, image: def.image }] : []));
  const r = await resolveImages(deps, wanted);
  if (r.status !== "resolved") {
    await rendered.cleanup();
    return r;
  }
  const pins = new Map(r.images.filter((i) => i.deployAs !== i.image).map((i) => [i.service, i.deployAs]));
  const done = (x: Rendered) => ({
    status: "resolved" as const,
    rendered: { ...x, warnings: [...x.warnings, ...r.warnings] },
    resolvedAt: r.resolvedAt,
    images: r.images,
  });
  if (pins.size === 0) return done(rendered);
  try {
    return done(await render(pins));
  } catch (err) {
    return { status: "failed", reason: `the stack file could not be rendered with its images' digests: ${(err as Error).message}` };
  } finally {
    await rendered.cleanup();
  }
}

const opts = (d: DeployDeps, keys: ReturnType<typeof ageKeysOnDemand>) => ({
  versionObjects: Boolean(d.stack.git),
  vars: d.stack.vars,
  keys,
});
