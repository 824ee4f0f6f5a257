import type { Logger } from "pino";
import type { Clock } from "../lib/clock.ts";
import type { Attempt, Job, Release, ServiceState } from "../spool/index.ts";
import type { AgentConfig, StackConfig } from "./config.ts";
import type { DockerRunner } from "./docker.ts";
import type { Plan, Rendered, VersionedObject } from "./prepare/index.ts";

// The value one stack's deploy carries down its steps (agent/pipeline.ts): the steps import it from
// here, never from each other's insides, and this file imports no step but for types.

/** The part of the watcher's configuration a deploy follows. */
export type DeployPolicy = Pick<AgentConfig, "deployTimeoutMs" | "retries" | "retryBackoffMs" | "healthTimeoutMs" | "digestPolicy"> & {
  /** DRY_RUN=1: plan and record, deploy nothing. */
  dryRun?: boolean;
  /** How often to inspect the services while they converge (default 1 s). */
  verifyEveryMs?: number;
  /** How often to poll the health URL (default 1 s). */
  healthEveryMs?: number;
};

export interface DeployResult {
  /** invalid: the commit's stack was refused before anything ran (it reaches outside its checkout, or its policy refuses it). */
  outcome: "success" | "failed" | "rolled_back" | "planned" | "invalid";
  reason?: string;
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
}

export interface DeployDeps {
  docker: DockerRunner;
  log: Logger;
  policy: DeployPolicy;
  stack: StackConfig;
  job: Job;
  clock: Clock;
}

/** A release on its way through the steps: what prepare produced, then what apply added. */
export interface Deploying {
  d: DeployDeps;
  rendered: Rendered;
  plan: Plan | undefined;
  /** Update states from before this are not this deploy's. */
  since: Date;
  deadline: number;
  /** What every docker command of this deploy is run with (prepare derives it once). */
  env: Record<string, string>;
  attempts: Attempt[];
  warnings: string[];
  /** Swarm took the new spec. */
  applied: boolean;
  /** `docker stack deploy` said an image could not be pinned to a digest. */
  unpinned: boolean;
}

/** A DeployResult that ends the deploy at the step it is in, with what the release gathered so far. */
export function ended(r: Deploying, outcome: DeployResult["outcome"], reason: string, services: ServiceState[] = []): DeployResult {
  return { outcome, reason, attempts: r.attempts, services, warnings: r.warnings, applied: r.applied, ...(r.plan ? { plan: r.plan } : {}) };
}
