import os from "node:os";
import type { Logger } from "pino";
import type { Clock } from "../../lib/clock.ts";
import type { DockerRunner } from "../docker.ts";
import { parseImageRef, pinned, type ImageRef } from "./image-ref.ts";
import type { Lookup, RegistryClient } from "./registry.ts";

/** How images are judged before a deploy (DIGEST_POLICY, IMAGE_WAIT_S). */
export interface ImagePolicy {
  /** auto: `fail` for images that name a registry host, `warn` for Docker Hub names. */
  digestPolicy: "auto" | "warn" | "fail";
  /** How long a job waits for an image its registry does not have yet (0: not at all). */
  imageWaitMs: number;
}

export interface ImageDeps {
  docker: DockerRunner;
  registry: RegistryClient;
  log: Logger;
  clock: Clock;
  policy: ImagePolicy;
  /** A newer job for the same stack, when one is pending: a waiting job gives way to it at once. */
  newer?: (() => string | undefined) | undefined;
  /** The watcher is stopping: a wait ends at once, the job left to the next start. */
  stopping?: (() => boolean) | undefined;
  /** Told when the job starts waiting for images, and with the images still missing. */
  onWaiting?: ((images: string[]) => Promise<void> | void) | undefined;
}

/** One service's image as the deploy will ask for it. */
export interface ResolvedImage {
  /** The service's key in the stack file (`web`). */
  service: string;
  /** What the stack file names. */
  image: string;
  /** What the deploy asks for: `image@sha256:…` when resolved, else the reference itself. */
  deployAs: string;
  /** Why it is not pinned, when it is not. */
  unpinned?: string;
}

export type ImageResolution =
  | { status: "resolved"; images: ResolvedImage[]; resolvedAt: string; warnings: string[] }
  | { status: "failed"; reason: string }
  | { status: "superseded"; by: string }
  /** The watcher is stopping during a wait: nothing recorded, the job stays claimed for the next start. */
  | { status: "interrupted" };

/** The longest pause between two questions to a registry while a job waits. */
export const MAX_WAIT_STEP_MS = 15_000;
const LOG_EVERY_MS = 60_000;

/** `docker info`'s registry settings: which registries the engine reaches over plain HTTP. */
interface RegistryConfig {
  InsecureRegistryCIDRs?: string[] | null;
  IndexConfigs?: Record<string, { Secure?: boolean }> | null;
}

function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  const toInt = (a: string) => a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  if (!base || !/^\d+\.\d+\.\d+\.\d+$/.test(ip) || !/^\d+\.\d+\.\d+\.\d+$/.test(base)) return false;
  const n = Number(bits ?? 32);
  const mask = n === 0 ? 0 : 2 ** 32 - 2 ** (32 - n);
  return (toInt(ip) & mask) >>> 0 === (toInt(base) & mask) >>> 0;
}

/** How long `docker info`'s registry settings are trusted before they are asked again. */
const REGISTRY_CONFIG_TTL_MS = 5 * 60_000;

/**
 * Whether the engine the watcher deploys through treats a registry as insecure, as `docker info`
 * says (its insecure registries and CIDRs; 127.0.0.0/8 is always among them): such a registry is
 * asked over plain HTTP, as the CLI does. The answer is kept for five minutes; a failed `docker
 * info` is not kept (loopback alone counts until the engine answers).
 */
export function insecureRegistries(docker: DockerRunner, now: () => number = Date.now): (registry: string) => Promise<boolean> {
  let kept: { config: RegistryConfig; at: number } | undefined;
  const ask = async (): Promise<RegistryConfig> => {
    if (kept && now() - kept.at < REGISTRY_CONFIG_TTL_MS) return kept.config;
    const r = await docker.capture(["info", "--format", "{{json .RegistryConfig}}"], { timeoutMs: 10_000 }).catch(() => null);
    if (!r || r.exitCode !== 0) return {};
    try {
      kept = { config: (JSON.parse(r.stdout) as RegistryConfig | null) ?? {}, at: now() };
      return kept.config;
    } catch {
      return {};
    }
  };
  return async (registry) => {
    const c = await ask();
    if (c.IndexConfigs?.[registry]?.Secure === false) return true;
    const host = registry.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
    if (host === "localhost" || host === "::1") return true;
    return [...(c.InsecureRegistryCIDRs ?? []), "127.0.0.0/8"].some((cidr) => inCidr(host, cidr));
  };
}

/** Whether the engine already holds the image (a local build, or one loaded by hand). */
async function heldLocally(docker: DockerRunner, image: string): Promise<boolean> {
  const r = await docker.capture(["image", "inspect", "--format", "{{.Id}}", image], { timeoutMs: 10_000 });
  return r.exitCode === 0;
}

type Judged = { settled: ResolvedImage } | { wait: true } | { fail: string };

/** One image's fate from one registry answer. */
function judge(ref: ImageRef, service: string, answer: Lookup, policy: ImagePolicy): Judged {
  if (answer.kind === "digest") return { settled: { service, image: ref.text, deployAs: pinned(ref, answer.digest) } };
  if (answer.kind === "not_found") {
    if (ref.digest) return { fail: `image ${ref.text} is no longer in the registry (${answer.detail})` };
    if (ref.namesHost && policy.imageWaitMs > 0) return { wait: true };
    return {
      fail: `image ${ref.text} not found in the registry (${answer.detail})`, // never waited for: a Docker Hub name, or IMAGE_WAIT_S=0
    };
  }
  const how = answer.kind === "unauthorized" ? `${answer.detail}: run docker login ${ref.registry} on ${os.hostname()}` : answer.detail;
  const strict = policy.digestPolicy === "fail" || (policy.digestPolicy === "auto" && ref.namesHost);
  if (strict)
    return {
      fail: `image ${ref.text} could not be resolved to a digest before the deploy: ${how} (DIGEST_POLICY=${policy.digestPolicy}); nothing was changed`,
    };
  return { settled: { service, image: ref.text, deployAs: ref.text, unpinned: how } };
}

/**
 * Resolve every service image of a rendered stack to the digest its registry serves now, before
 * anything touches the cluster (the images-first step). An image without a registry host that the
 * engine already holds deploys by reference, with a warning. A tag its registry does not have yet
 * is waited for (IMAGE_WAIT_S), asked again with backoff up to MAX_WAIT_STEP_MS; a newer job for
 * the stack ends the wait at once. A registry that cannot answer ends the deploy under
 * DIGEST_POLICY=fail (or auto, for an image naming its registry host), else the image deploys by
 * reference and the warning names it.
 * @example
 * const r = await resolveImages(deps, [{ service: "web", image: "ghcr.io/acme/web:3f2a9c1" }]);
 * if (r.status === "resolved") overlay(r.images.map((i) => [i.service, i.deployAs]));
 */
export async function resolveImages(d: ImageDeps, wanted: { service: string; image: string }[]): Promise<ImageResolution> {
  const settled = new Map<string, ResolvedImage>();
  const refs = new Map<string, ImageRef>();
  for (const w of wanted) {
    try {
      refs.set(w.service, parseImageRef(w.image));
    } catch (err) {
      return { status: "failed", reason: (err as Error).message };
    }
  }
  const started = d.clock.now().getTime();
  let step = 1000;
  let logged = -Infinity;
  for (let round = 0; ; round++) {
    const missing: string[] = [];
    // one question per distinct image, however many services share it, all asked at once
    const answers = new Map<string, Promise<Lookup | "local">>();
    for (const [service, ref] of refs) {
      if (settled.has(service) || answers.has(ref.text)) continue;
      const answer = (async () =>
        !ref.namesHost && !ref.digest && (await heldLocally(d.docker, ref.text)) ? ("local" as const) : d.registry.lookup(ref))();
      answer.catch(() => undefined); // awaited below; a rejection is not left unhandled meanwhile
      answers.set(ref.text, answer);
    }
    for (const [service, ref] of refs) {
      if (settled.has(service)) continue;
      const got = await (answers.get(ref.text) as Promise<Lookup | "local">);
      if (got === "local") {
        // under every policy: a local build, or a Docker Hub image this node already pulled, is not a registry's to judge
        settled.set(service, {
          service,
          image: ref.text,
          deployAs: ref.text,
          unpinned: "held by the engine, no registry host: deployed by reference",
        });
        continue;
      }
      const fate = judge(ref, service, got, d.policy);
      if ("fail" in fate) return { status: "failed", reason: fate.fail };
      if ("wait" in fate) missing.push(ref.text);
      else settled.set(service, fate.settled);
    }
    if (missing.length === 0) break;
    const names = [...new Set(missing)];
    const waited = d.clock.now().getTime() - started;
    if (waited >= d.policy.imageWaitMs)
      return {
        status: "failed",
        reason: `${names.map((n) => `image ${n}`).join(", ")} not found in the registry after ${Math.round(d.policy.imageWaitMs / 1000)} s; nothing was changed`,
      };
    if (round === 0) await d.onWaiting?.(names);
    if (waited - logged >= LOG_EVERY_MS) {
      d.log.info(
        { images: names, waitedS: Math.round(waited / 1000), limitS: d.policy.imageWaitMs / 1000 },
        `waiting for images: ${names.join(", ")}`,
      );
      logged = waited;
    }
    const until = Math.min(started + d.policy.imageWaitMs, d.clock.now().getTime() + step);
    while (d.clock.now().getTime() < until) {
      const by = d.newer?.();
      if (by) return { status: "superseded", by };
      if (d.stopping?.()) return { status: "interrupted" };
      await d.clock.sleep(Math.min(1000, until - d.clock.now().getTime()));
    }
    step = Math.min(step * 2, MAX_WAIT_STEP_MS);
  }
  const images = wanted.map((w) => settled.get(w.service) as ResolvedImage);
  const warnings = images
    .filter((i) => i.unpinned)
    .map((i) => `${i.service}: image ${i.image} not pinned to a digest (${i.unpinned as string}); nodes may run different builds`);
  return { status: "resolved", images, resolvedAt: d.clock.now().toISOString(), warnings };
}
