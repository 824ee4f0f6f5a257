import type { Logger } from "pino";
import type { Clock } from "../lib/clock.ts";
import type { Attempt, Job, Progress, Release, ServiceState } from "../spool/index.ts";
import type { AgentConfig, StackConfig } from "./config.ts";
import type { DockerRunner } from "./docker.ts";
import type { Plan, RegistryClient, Rendered, Stage, VersionedObject } from "./prepare/index.ts";

// The value one stack's deploy carries down its steps (agent/pipeline.ts): the steps import it from
// here, never from each other's insides, and this file imports no step but for types.

/** The part of the watcher's configuration a deploy follows. */
export type DeployPolicy = Pick<
  AgentConfig,
  "deployTimeoutMs" | "retries" | "retryBackoffMs" | "healthTimeoutMs" | "digestPolicy" | "imageWaitMs"
> &
  Partial<Pick<AgentConfig, "ageKeyFile" | "keepObjectVersions">> & {
    /** DRY_RUN=1: plan and record, deploy nothing. */
    dryRun?: boolean;
    /** How often to inspect the services while they converge (default 1 s). */
    verifyEveryMs?: number;
    /** How often to poll the health URL (default 1 s). */
    healthEveryMs?: number;
  };

export interface DeployResult {
  /**
   * invalid: the commit's stack was refused before anything ran (it reaches outside its checkout, or its policy refuses it).
   * superseded: a newer job for the stack arrived while this one waited for its images.
   * interrupted: the watcher stopped while it waited for images; not recorded, deployed again at the next start.
   */
  outcome: "success" | "failed" | "rolled_back" | "planned" | "invalid" | "superseded" | "interrupted";
  reason?: string;
  /** The job that superseded this one while it waited for images. */
  supersededBy?: string;
  attempts: Attempt[];
  services: ServiceState[];
  warnings: string[];
  /** Swarm took the new spec (a failure after this leaves it serving; before it, nothing changed). */
  applied: boolean;
  /** On success: what the stack now runs, to be recorded and deployed again by a rollback. */
  release?: Release;
  /** What the deploy changes against the running services (absent when it could not be planned). */
  plan?: Plan;
  /** Configs and secrets this deploy named by their content (stacks from git), for pruning old versions. */
  objects?: VersionedObject[];
  /** On success: the stack as it was deployed, rendered and pinned (what the reconcile loop compares the running services with). */
  deployedDoc?: unknown;
}

/** What the deploy tells the loop that runs it while it waits for images, and asks of it. */
export interface DeployHooks {
  /** A newer job pending for the same stack (its id), which ends an image wait at once. */
  newer?: () => string | undefined;
  /** The watcher is stopping: an image wait ends, leaving the job claimed for the next start. */
  stopping?: () => boolean;
  /** The job started waiting for images its registry does not have yet. */
  onWaiting?: (images: string[]) => Promise<void> | void;
  /** The images are there: the deploy goes on to change the cluster. `waitedMs` is 0 when it did not wait. */
  onResolved?: (waitedMs: number) => Promise<void> | void;
  /** Where the deploy is, for `swarmhook follow` and the deployment page (each phase, each inspection). */
  onProgress?: (phase: Progress["phase"], services: Progress["services"], stage?: Progress["stage"]) => Promise<void> | void;
}

export interface DeployDeps {
  docker: DockerRunner;
  registry: RegistryClient;
  hooks?: DeployHooks;
  log: Logger;
  policy: DeployPolicy;
  stack: StackConfig;
  job: Job;
  clock: Clock;
  /** The job's private checkout, when the stack file is a commit's (encrypted env_files are decrypted only there). */
  checkout?: string;
}

/** A release on its way through the steps: what prepare produced, then what apply added. */
export interface Deploying {
  d: DeployDeps;
  rendered: Rendered;
  plan: Plan | undefined;
  /** The stack's stages (`swarmhook.stage` labels, job services), lowest first; null: all at once. */
  stages: Stage[] | null;
  /** Update states from before this are not this deploy's. */
  since: Date;
  deadline: number;
  /** What every docker command of this deploy is run with (prepare derives it once). */
  env: Record<string, string>;
  /** When the images were resolved to the digests the deploy asks for. */
  resolvedAt: string;
  /** Service → variables an encrypted env_file gave it: their values are redacted from what is kept. */
  secretEnv: ReadonlyMap<string, ReadonlySet<string>>;
  /** Remove the decrypted env_files (apply calls it right after `docker stack deploy`). */
  removePlaintext(): Promise<number>;
  attempts: Attempt[];
  warnings: string[];
  /** Swarm took the new spec. */
  applied: boolean;
}

/** A DeployResult that ends the deploy at the step it is in, with what the release gathered so far. */
export function ended(r: Deploying, outcome: DeployResult["outcome"], reason: string, services: ServiceState[] = []): DeployResult {
  return { outcome, reason, attempts: r.attempts, services, warnings: r.warnings, applied: r.applied, ...(r.plan ? { plan: r.plan } : {}) };
}
