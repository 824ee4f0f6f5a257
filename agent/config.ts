import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { logFormatVar, type LogFormat } from "../lib/log.ts";
import { ConfigError, cleanEnv, logLevelVar, parseEnv, secretVar } from "../lib/config.ts";
import { describeIssues } from "../lib/zod.ts";
import { REPOSITORY, STACK_NAME } from "../spool/index.ts";

export interface StackConfig {
  name: string;
  file: string;
  /** owner/name this stack deploys from; undefined = any (the API already filtered). */
  repository: string | undefined;
  /** Branches (refs/heads/...) that deploy it; empty = any branch the API accepted. */
  branches: readonly string[];
  healthUrl: string | undefined;
}

export interface AgentConfig {
  spoolDir: string;
  stacks: readonly StackConfig[];
  pollIntervalMs: number;
  deployTimeoutMs: number;
  retries: number;
  retryBackoffMs: number;
  healthTimeoutMs: number;
  digestPolicy: "warn" | "fail";
  logLevel: string;
  logFormat: LogFormat;
  /** Where /metrics is served (host and port), or undefined: off. */
  metrics: { host: string; port: number } | undefined;
  /** After a deploy that failed once Swarm had applied it: go back to the last good release, or stay. */
  onFailure: "rollback" | "stay";
  /** Records older than this are removed (hourly). */
  historyKeepMs: number;
}

const envSchema = z.object({
  SPOOL_DIR: z.string({ error: "SPOOL_DIR is required: the spool root, e.g. /mnt/nfs/webhook_jobs" }),
  STACK_FILE: z.string().optional(),
  STACK_NAME: z.string().regex(STACK_NAME, "STACK_NAME must be a Docker stack name ([a-zA-Z0-9_-], starting alphanumeric)").optional(),
  POLL_INTERVAL_MS: z.coerce.number().int().min(50).max(60_000).default(1000),
  DEPLOY_TIMEOUT_S: z.coerce
    .number()
    .int()
    .min(5)
    .max(24 * 3600)
    .default(600),
  DEPLOY_RETRIES: z.coerce.number().int().min(0).max(20).default(3),
  RETRY_BACKOFF_MS: z.coerce.number().int().min(0).max(600_000).default(2000),
  HEALTH_URL: z.url({ protocol: /^https?$/, error: "HEALTH_URL must be an http(s) URL" }).optional(),
  HEALTH_TIMEOUT_S: z.coerce.number().int().min(1).max(3600).default(120),
  DIGEST_POLICY: z.enum(["warn", "fail"], { error: "DIGEST_POLICY must be warn or fail" }).default("warn"),
  LOG_LEVEL: logLevelVar,
  LOG_FORMAT: logFormatVar,
  METRICS_ADDR: z
    .string()
    .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "METRICS_ADDR must be host:port, e.g. 10.100.0.8:9464 (the WireGuard address)")
    .optional(),
  AGENT_CONFIG: z.string().optional(),
  ON_FAILURE: z.enum(["rollback", "stay"], { error: "ON_FAILURE must be rollback or stay" }).default("rollback"),
  HISTORY_KEEP_DAYS: z.coerce.number().int().min(1).max(36500).default(90),
  // not used by the watcher, but handed to the stack it deploys: a placeholder would only fail there, later
  VISIT_SALT: secretVar("VISIT_SALT", 16).optional(),
  POSTGRES_PASSWORD: secretVar("POSTGRES_PASSWORD", 12).optional(),
});

const fileSchema = z.strictObject({
  stacks: z
    .array(
      z.strictObject({
        name: z.string().regex(STACK_NAME, "must be a Docker stack name"),
        file: z.string().min(1),
        repository: z.string().regex(REPOSITORY, "must be owner/name").optional(),
        branches: z.array(z.string().min(1)).default([]),
        healthUrl: z.url({ protocol: /^https?$/ }).optional(),
      }),
    )
    .min(1),
});

function readStacksFile(file: string): StackConfig[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`AGENT_CONFIG=${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`AGENT_CONFIG=${file}: not YAML: ${(err as Error).message}`);
  }
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) {
    throw new ConfigError(`AGENT_CONFIG=${file}: ${describeIssues(parsed.error)}`);
  }
  const names = new Set<string>();
  return parsed.data.stacks.map((s) => {
    if (names.has(s.name)) throw new ConfigError(`AGENT_CONFIG=${file}: stack ${s.name} is listed twice`);
    names.add(s.name);
    return {
      name: s.name,
      file: path.resolve(path.dirname(file), s.file),
      repository: s.repository,
      branches: s.branches,
      healthUrl: s.healthUrl,
    };
  });
}

function splitAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  const port = Number(addr.slice(i + 1));
  if (port < 1 || port > 65535) throw new ConfigError(`METRICS_ADDR=${addr}: the port must be 1-65535`);
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ""), port };
}

/**
 * Parse the agent's configuration once. One stack from STACK_FILE + STACK_NAME (+ HEALTH_URL), or
 * several from the YAML file AGENT_CONFIG. Throws ConfigError naming the variable.
 * @example
 * loadAgentConfig({ SPOOL_DIR: "/srv/nfs/webhook_jobs", STACK_FILE: "/opt/app/stack/stack.yaml", STACK_NAME: "app" });
 */
export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): Readonly<AgentConfig> {
  const v = parseEnv(envSchema, cleanEnv(env));
  let stacks: StackConfig[];
  if (v.AGENT_CONFIG) {
    if (v.STACK_FILE || v.STACK_NAME) throw new ConfigError("AGENT_CONFIG and STACK_FILE/STACK_NAME are both set: use one");
    stacks = readStacksFile(v.AGENT_CONFIG);
  } else {
    if (!v.STACK_FILE) throw new ConfigError("STACK_FILE is required (the stack file to deploy), or AGENT_CONFIG for several stacks");
    if (!v.STACK_NAME) throw new ConfigError("STACK_NAME is required (the Docker stack name, e.g. app)");
    stacks = [{ name: v.STACK_NAME, file: path.resolve(v.STACK_FILE), repository: undefined, branches: [], healthUrl: v.HEALTH_URL }];
  }
  return Object.freeze({
    spoolDir: v.SPOOL_DIR,
    stacks: Object.freeze(stacks.map((s) => Object.freeze(s))),
    pollIntervalMs: v.POLL_INTERVAL_MS,
    deployTimeoutMs: v.DEPLOY_TIMEOUT_S * 1000,
    retries: v.DEPLOY_RETRIES,
    retryBackoffMs: v.RETRY_BACKOFF_MS,
    healthTimeoutMs: v.HEALTH_TIMEOUT_S * 1000,
    digestPolicy: v.DIGEST_POLICY,
    logLevel: v.LOG_LEVEL,
    logFormat: v.LOG_FORMAT,
    metrics: v.METRICS_ADDR ? splitAddr(v.METRICS_ADDR) : undefined,
    onFailure: v.ON_FAILURE,
    historyKeepMs: v.HISTORY_KEEP_DAYS * 24 * 3600 * 1000,
  });
}
