import { createHash } from "node:crypto";

/** The label that orders a service's deploy: stage by stage, lowest first (unlabelled services are stage 0). */
export const STAGE_LABEL = "swarmhook.stage";
/** How long a job service (a migration) may take to complete, in seconds (default DEPLOY_TIMEOUT_S). */
export const TIMEOUT_LABEL = "swarmhook.timeout";
/** The hash of a job service's definition as the watcher last sent it: a job is sent again only when this changes. */
export const SPEC_LABEL = "swarmhook.spec";

/** One stage of a stack: its services (stack file keys), and the job services among them with their timeouts. */
export interface Stage {
  n: number;
  services: string[];
  /** Job service (replicated-job or global-job) → how long it may take to complete. */
  jobs: Map<string, { timeoutMs: number }>;
}

/** A stage label or timeout that is not a number: the commit's stack file is refused (invalid). */
export class StageError extends Error {}

type Service = { deploy?: { mode?: string; labels?: Record<string, unknown> | string[] } };

/** A `deploy.labels` entry, from either compose form (a map, or a list of `key=value`). */
function label(def: Service, key: string): string | undefined {
  const labels = def.deploy?.labels;
  if (Array.isArray(labels)) {
    const entry = labels.find((l) => typeof l === "string" && l.split("=")[0] === key);
    return entry === undefined ? undefined : entry.slice(key.length + 1);
  }
  const v = labels?.[key];
  return v === undefined || v === null ? undefined : String(v);
}

/** A service that Swarm runs to completion (a migration) instead of keeping it running. */
export const isJob = (def: unknown): boolean => /-job$/.test(String((def as Service | undefined)?.deploy?.mode ?? ""));

/**
 * The stages of a rendered stack (renderStack's `doc`), lowest first, or null when the stack has no
 * `swarmhook.stage` label and no job service: it deploys all at once, as `docker stack deploy` does.
 * Throws StageError for a label that is not an integer or a timeout that is not a positive number.
 * @example
 * const stages = stagesOf(rendered.doc, 300_000); // [{ n: 0, services: ["migrate"], … }, { n: 1, … }]
 */
export function stagesOf(doc: unknown, deployTimeoutMs: number): Stage[] | null {
  const services = ((doc ?? {}) as { services?: Record<string, Service> }).services ?? {};
  const byN = new Map<number, Stage>();
  let staged = false;
  for (const [name, def] of Object.entries(services)) {
    const raw = label(def, STAGE_LABEL);
    if (raw !== undefined && !/^-?\d{1,6}$/.test(raw.trim()))
      throw new StageError(`${name}: ${STAGE_LABEL} must be an integer, not ${JSON.stringify(raw.slice(0, 40))}`);
    const n = raw === undefined ? 0 : Number(raw.trim());
    const stage: Stage = byN.get(n) ?? { n, services: [], jobs: new Map() };
    byN.set(n, stage);
    stage.services.push(name);
    staged ||= raw !== undefined || isJob(def);
    if (!isJob(def)) continue;
    const t = label(def, TIMEOUT_LABEL);
    if (t !== undefined && !(/^\d+(\.\d+)?$/.test(t.trim()) && Number(t) > 0))
      throw new StageError(`${name}: ${TIMEOUT_LABEL} must be a number of seconds, not ${JSON.stringify(t.slice(0, 40))}`);
    stage.jobs.set(name, { timeoutMs: t === undefined ? deployTimeoutMs : Math.round(Number(t) * 1000) });
  }
  return staged ? [...byN.values()].sort((a, b) => a.n - b.n) : null;
}

/** The hash a job service's definition is sent with (its label `swarmhook.spec`): any change to it re-runs the job. */
export const jobSpecHash = (def: unknown): string => createHash("sha256").update(JSON.stringify(def)).digest("hex").slice(0, 16);

/**
 * The stack file one stage deploys: the rendered stack with only `services` (stack file keys) and
 * everything at the top (networks, configs, secrets, volumes) as it is. A job service carries the hash
 * of its definition as a label, so the next deploy can tell whether it changed. `env_file` is left
 * out: `docker stack config` already put its variables in `environment`, and the file (decrypted, or
 * relative to the stack file) is not where the stage's file is.
 */
export function stageDoc(doc: unknown, services: readonly string[]): Record<string, unknown> {
  const all = ((doc ?? {}) as { services?: Record<string, Record<string, unknown>> }).services ?? {};
  const picked: Record<string, unknown> = {};
  for (const name of services) {
    const def = { ...all[name] };
    delete def.env_file;
    if (!isJob(def)) {
      picked[name] = def;
      continue;
    }
    const deploy = (def.deploy ?? {}) as { labels?: Record<string, unknown> | string[] };
    const labels = Array.isArray(deploy.labels)
      ? Object.fromEntries(deploy.labels.map((l) => [l.split("=")[0], l.slice(l.indexOf("=") + 1)]))
      : { ...deploy.labels };
    picked[name] = { ...def, deploy: { ...deploy, labels: { ...labels, [SPEC_LABEL]: jobSpecHash(all[name]) } } };
  }
  return { ...(doc as object), services: picked };
}

/**
 * A job service without `deploy.restart_policy` is restarted by Swarm after a failure for as long as
 * the compose default (`condition: any`) says: for ever, every 5 s. The deploy still fails at its
 * first failure; the warning says how to stop the retries.
 */
export function jobWarnings(doc: unknown): string[] {
  const services = ((doc ?? {}) as { services?: Record<string, { deploy?: { restart_policy?: unknown } }> }).services ?? {};
  return Object.entries(services)
    .filter(([, def]) => isJob(def) && def.deploy?.restart_policy === undefined)
    .map(
      ([name]) =>
        `${name}: a job without deploy.restart_policy is run again by Swarm every 5 s after a failure until the next deploy; set restart_policy: { condition: none } for a migration`,
    );
}
