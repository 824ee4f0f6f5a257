import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { logFormatVar, type LogFormat } from "../lib/log.ts";
import { variableRows, type VariableRow } from "../lib/config-table.ts";
import { ConfigError, cleanEnv, listVar, logLevelVar, parseEnv, secretVar, tagsVar } from "../lib/config.ts";
import { describeIssues } from "../lib/zod.ts";
import { REPOSITORY, STACK_NAME } from "../spool/index.ts";
import { ALLOW_ALL, type StackPolicy } from "./prepare/index.ts";

export interface StackConfig {
  name: string;
  /** The stack file on this node; for a git stack, its path inside the repository. */
  file: string;
  /** Deploy the stack file as it is in the pushed commit (and the files it references). */
  git: { url: string; path: string } | undefined;
  /** owner/name this stack deploys from (default DEPLOY_REPOSITORY); undefined = any repository a valid webhook names. */
  repository: string | undefined;
  /** Branches (refs/heads/...) that deploy it (default DEPLOY_BRANCHES, main): judged again here, whatever the API let through. */
  branches: readonly string[];
  /** Tag patterns (refs/tags/...) that deploy it (default DEPLOY_TAGS: none); `*` is any tag. */
  tags: readonly string[];
  /** The watcher's variables the stack file is rendered with (STACK_ENV, the stack's `env:`), read once at start. */
  vars: Readonly<Record<string, string>>;
  /** What its commits may ask of the hosts (AGENT_CONFIG `policy:`); unset, everything. */
  policy: StackPolicy;
  healthUrl: string | undefined;
  /** GitHub Deployments: the environment's name (default the stack's), its URL, and whether it is production. */
  environment: string;
  environmentUrl: string | undefined;
  productionEnvironment: boolean;
  /** Whether the reconcile loop checks this stack (AGENT_CONFIG `reconcile: false` opts one out). */
  reconcile: boolean;
  /** Whether a drifted stack is put back on its last release (SELF_HEAL, or the stack's `selfHeal`). */
  selfHeal: boolean;
  /** Stacks that deploy before this one when one commit brings jobs for both; their failure blocks this one. */
  dependsOn: readonly string[];
}

export type GithubAuth = { type: "token"; token: string } | { type: "app"; appId: string; privateKey: string; installationId: number };

export type NotifyFormat = "slack" | "discord" | "json";

/** Where deploy outcomes are reported beyond the records: GitHub and chat, through the outbox. */
export interface ReportsConfig {
  github: { apiUrl: string; auth: GithubAuth } | undefined;
  /** A link per deployment: `{id}`, `{stack}`, `{sha}` are filled in (e.g. the history page). */
  logUrlTemplate: string | undefined;
  notify: {
    targets: readonly { format: NotifyFormat; url: string }[];
    secret: string | undefined;
    on: "failure" | "all";
    repeatMs: number;
  };
  /** The outbox holds at most this many undelivered reports; beyond, the oldest is dropped (logged). */
  outboxMax: number;
}

export interface AgentConfig {
  spoolDir: string;
  /** Local state: git mirrors and per-job checkouts (never on the NFS spool). */
  stateDir: string;
  /** Versions of each content-named config and secret kept after a deploy (stacks from git). */
  keepObjectVersions: number;
  /** SOPS_AGE_KEY_FILE: the age identities that decrypt a stack's encrypted files (read when one needs them). */
  ageKeyFile?: string | undefined;
  /** DRY_RUN=1: every job is planned and recorded `planned`; nothing is deployed. */
  dryRun: boolean;
  stacks: readonly StackConfig[];
  pollIntervalMs: number;
  deployTimeoutMs: number;
  retries: number;
  retryBackoffMs: number;
  healthTimeoutMs: number;
  /** auto: `fail` for images naming a registry host, `warn` for Docker Hub names. */
  digestPolicy: "auto" | "warn" | "fail";
  /** How long a job waits for an image its registry does not have yet (0: not at all). */
  imageWaitMs: number;
  logLevel: string;
  logFormat: LogFormat;
  /** Where /metrics is served (host and port), or undefined: off. */
  metrics: { host: string; port: number } | undefined;
  /** After a deploy that failed once Swarm had applied it: go back to the last good release, or stay. */
  onFailure: "rollback" | "stay";
  /** Records older than this are removed (hourly). */
  historyKeepMs: number;
  /** How often the reconcile loop compares branch tips and running services with what was deployed; 0: never. */
  reconcileIntervalMs: number;
  reports: ReportsConfig;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,99}$/;

const shape = {
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
  DIGEST_POLICY: z.enum(["auto", "warn", "fail"], { error: "DIGEST_POLICY must be auto, warn or fail" }).default("auto"),
  IMAGE_WAIT_S: z.coerce
    .number()
    .int()
    .min(0)
    .max(24 * 3600)
    .default(900),
  RECONCILE_INTERVAL_S: z.coerce
    .number()
    .int()
    .max(7 * 86400)
    .refine((n) => n === 0 || n >= 5, "RECONCILE_INTERVAL_S must be 0 (off) or at least 5")
    .default(180),
  SELF_HEAL: z.enum(["0", "1", "true", "false"], { error: "SELF_HEAL must be 1 or 0" }).default("0"),
  LOG_LEVEL: logLevelVar,
  LOG_FORMAT: logFormatVar,
  METRICS_ADDR: z
    .string()
    .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "METRICS_ADDR must be host:port, e.g. 10.100.0.8:9464 (the WireGuard address)")
    .optional(),
  AGENT_CONFIG: z.string().optional(),
  DEPLOY_REPOSITORY: z.string().regex(REPOSITORY, "DEPLOY_REPOSITORY must be owner/name").optional(),
  DEPLOY_BRANCHES: listVar.transform((l) => (l.length > 0 ? l : ["main"])),
  DEPLOY_TAGS: tagsVar,
  STACK_ENV: listVar.pipe(z.array(z.string().regex(ENV_NAME, "STACK_ENV: each must be a variable name (A-Z, 0-9, _)"))).optional(),
  STATE_DIR: z.string().default("/var/lib/swarmhook"),
  KEEP_OBJECT_VERSIONS: z.coerce.number().int().min(1).max(100).default(3),
  SOPS_AGE_KEY_FILE: z.string().optional(),
  DRY_RUN: z.enum(["0", "1", "true", "false"], { error: "DRY_RUN must be 1 or 0" }).default("0"),
  ON_FAILURE: z.enum(["rollback", "stay"], { error: "ON_FAILURE must be rollback or stay" }).default("rollback"),
  HISTORY_KEEP_DAYS: z.coerce.number().int().min(1).max(36500).default(90),
  DEPLOY_ENVIRONMENT: z.string().min(1).max(255).optional(),
  ENVIRONMENT_URL: z.url({ protocol: /^https?$/, error: "ENVIRONMENT_URL must be an http(s) URL" }).optional(),
  PRODUCTION_ENVIRONMENT: z.enum(["true", "false"], { error: "PRODUCTION_ENVIRONMENT must be true or false" }).default("true"),
  GITHUB_TOKEN: secretVar("GITHUB_TOKEN", 20, "a fine-grained token: Deployments and Commit statuses, read and write").optional(),
  GITHUB_APP_ID: z
    .string()
    .regex(/^\d{1,12}$|^Iv[0-9A-Za-z.]{4,40}$/, "GITHUB_APP_ID must be the App's ID or client ID")
    .optional(),
  GITHUB_APP_PRIVATE_KEY: z
    .string()
    .includes("PRIVATE KEY", { error: "GITHUB_APP_PRIVATE_KEY_FILE must be the App's .pem file" })
    .optional(),
  GITHUB_APP_INSTALLATION_ID: z.coerce.number().int().positive({ error: "GITHUB_APP_INSTALLATION_ID must be a number" }).optional(),
  GITHUB_API_URL: z.url({ protocol: /^https?$/, error: "GITHUB_API_URL must be an http(s) URL" }).default("https://api.github.com"),
  LOG_URL_TEMPLATE: z
    .string()
    .regex(/^https?:\/\/\S+$/, "LOG_URL_TEMPLATE must be an http(s) URL, e.g. https://app.example.com/deployments/{id}")
    .optional(),
  NOTIFY_URLS: listVar,
  NOTIFY_SECRET: secretVar("NOTIFY_SECRET", 16).optional(),
  NOTIFY_ON: z.enum(["failure", "all"], { error: "NOTIFY_ON must be failure or all" }).default("failure"),
  NOTIFY_REPEAT_S: z.coerce
    .number()
    .int()
    .min(0)
    .max(30 * 86400)
    .default(3600),
  OUTBOX_MAX: z.coerce.number().int().min(10).max(100_000).default(1000),
  // not used by the watcher, but handed to the stack it deploys: a placeholder would only fail there, later
  VISIT_SALT: secretVar("VISIT_SALT", 16).optional(),
  POSTGRES_PASSWORD: secretVar("POSTGRES_PASSWORD", 12).optional(),
};

const FILE_VARS = ["GITHUB_TOKEN", "GITHUB_APP_PRIVATE_KEY", "NOTIFY_SECRET", "NOTIFY_URLS"];

/** What each variable means: docs/reference.md's table and `swarmhook config` are made from these and the schema. */
const MEANINGS: Record<keyof typeof shape, string> = {
  SPOOL_DIR: "the spool root: the NFS mount (on kvm8 its bind mount), never created by the code",
  STACK_FILE: "the stack file to deploy (one stack; or AGENT_CONFIG for several)",
  STACK_NAME: "the Docker stack name STACK_FILE is deployed as, e.g. `app`",
  POLL_INTERVAL_MS: "how often `new/` is scanned, in ms (NFS gives no inotify for other clients' writes)",
  DEPLOY_TIMEOUT_S: "outer limit for one deploy, verification included, in seconds",
  DEPLOY_RETRIES: "retries of a transient deploy failure",
  RETRY_BACKOFF_MS: "first retry's wait in ms, doubling, at most 60 s",
  HEALTH_URL: "polled after a deploy until it answers 200 naming the deployed commit",
  HEALTH_TIMEOUT_S: "seconds HEALTH_URL has to answer so",
  DIGEST_POLICY:
    "when a registry cannot tell an image's digest before the deploy (unreachable, credentials refused): `fail` the job with nothing changed, or `warn` and deploy by reference; `auto`: fail for images that name a registry host (ghcr.io/…), warn for Docker Hub names",
  IMAGE_WAIT_S:
    "seconds a job waits for an image its registry does not have yet (a workflow still building it), asking again at most 15 s apart; 0: fail at once",
  RECONCILE_INTERVAL_S:
    "seconds between reconcile passes: a branch tip no webhook brought is deployed, and services changed by hand are reported as drift; 0: off",
  SELF_HEAL: "`1`: a stack that drifted is redeployed from its last release (at most three times until the next deploy)",
  LOG_LEVEL: "pino level: fatal, error, warn, info, debug, trace, silent",
  LOG_FORMAT: "`auto`: readable lines at a terminal, JSON otherwise (journald); `pretty` or `json` forces one",
  METRICS_ADDR: "`host:port` serving Prometheus `/metrics`, e.g. `10.100.0.8:9464` (WireGuard, never public); unset: off",
  AGENT_CONFIG: "a YAML file of several stacks (docs/reference.md), instead of STACK_FILE and STACK_NAME",
  DEPLOY_REPOSITORY: "the repository whose jobs deploy (owner/name), judged again here; default of AGENT_CONFIG stacks; unset: any",
  DEPLOY_BRANCHES: "branches that deploy, judged again here; default of AGENT_CONFIG stacks",
  DEPLOY_TAGS: "tag pushes that deploy (as the API's); default of AGENT_CONFIG stacks",
  STACK_ENV:
    "the watcher's variables every stack is rendered with, besides IMAGE_TAG and DEPLOY_SHA (unset: those a file on this node references)",
  STATE_DIR: "local state: git mirrors, checkouts, the outbox, claim copies (never on the NFS spool)",
  KEEP_OBJECT_VERSIONS: "versions of each content-named config and secret kept after a deploy (a rollback needs its release's)",
  SOPS_AGE_KEY_FILE:
    "age identities (mode 0600) that decrypt a stack's SOPS and age files; `swarmhook keygen` makes one, e.g. /etc/swarmhook/age.key",
  DRY_RUN: "`1`: every job is planned and recorded `planned`; nothing is deployed",
  ON_FAILURE: "after a deploy that failed once Swarm had applied it: `rollback` to the last good release, or `stay`",
  HISTORY_KEEP_DAYS: "records older than this are removed (hourly)",
  DEPLOY_ENVIRONMENT: "GitHub Deployments: the environment's name (unset: the stack's name)",
  ENVIRONMENT_URL: "GitHub Deployments: the environment's URL",
  PRODUCTION_ENVIRONMENT: "GitHub Deployments: whether the environment is production",
  GITHUB_TOKEN: "a fine-grained token (Deployments and Commit statuses, read and write); or the three GITHUB_APP_* below",
  GITHUB_APP_ID: "a GitHub App's ID or client ID (with the two below)",
  GITHUB_APP_PRIVATE_KEY: "the App's private key (.pem); set GITHUB_APP_PRIVATE_KEY_FILE",
  GITHUB_APP_INSTALLATION_ID: "the App's installation on the repository",
  GITHUB_API_URL: "GitHub's REST API (GitHub Enterprise: its /api/v3)",
  LOG_URL_TEMPLATE: "a link per deployment (`{id}`, `{stack}`, `{sha}` filled in), e.g. the history page",
  NOTIFY_URLS: "chat endpoints, comma separated: Slack and Discord webhooks are known by host, `slack+`/`discord+`/`json+` forces a format",
  NOTIFY_SECRET: "signs the generic JSON messages (X-Swarmhook-Signature-256)",
  NOTIFY_ON: "`failure`: failures and the first success after one; `all`: every outcome",
  NOTIFY_REPEAT_S: "a failure repeating for the same stack is told again at most this often",
  OUTBOX_MAX: "undelivered reports kept; beyond, the oldest is dropped (logged)",
  VISIT_SALT: "not used by the watcher: checked because it is handed to the stack",
  POSTGRES_PASSWORD: "not used by the watcher: checked because it is handed to the stack",
};

/** The watcher's variables, one row each, from the schema: `swarmhook config --program watcher`. */
export const watcherVariableRows = (): VariableRow[] => variableRows("watcher", shape, MEANINGS, FILE_VARS);

const envSchema = z.object(shape);

const fileSchema = z.strictObject({
  stacks: z
    .array(
      z.strictObject({
        name: z.string().regex(STACK_NAME, "must be a Docker stack name"),
        file: z.string().min(1).optional(),
        git: z
          .strictObject({
            url: z
              .string()
              .regex(/^(https?:\/\/|ssh:\/\/|git:\/\/|file:\/\/|[\w.-]+@[\w.-]+:)\S+$/, "git.url must be an https, ssh, git or file URL"),
            path: z
              .string()
              .regex(/^(?!\/)(?!.*(^|\/)\.\.(\/|$))[\w./-]+$/, "git.path must be a path inside the repository")
              .default("stack/stack.yaml"),
          })
          .optional(),
        repository: z.string().regex(REPOSITORY, "must be owner/name").optional(),
        branches: z.array(z.string().min(1)).optional(),
        tags: z.array(z.string().regex(/^[A-Za-z0-9._/*?-]{1,100}$/, "tags: patterns such as v*")).optional(),
        env: z.array(z.string().regex(ENV_NAME, "env: variable names (A-Z, 0-9, _)")).optional(),
        policy: z
          .strictObject({
            bindMounts: z.boolean().default(true),
            hostPorts: z.boolean().default(true),
            privileged: z.boolean().default(true),
          })
          .optional(),
        healthUrl: z.url({ protocol: /^https?$/ }).optional(),
        environment: z.string().min(1).max(255).optional(),
        environmentUrl: z.url({ protocol: /^https?$/ }).optional(),
        productionEnvironment: z.boolean().default(true),
        reconcile: z.boolean().default(true),
        selfHeal: z.boolean().optional(),
        dependsOn: z.array(z.string().regex(STACK_NAME, "dependsOn: stack names")).max(50).optional(),
      }),
    )
    .min(1),
});

/** The watcher's own credentials: never handed to a stack, whatever STACK_ENV or a stack file names. */
const WATCHER_SECRETS = /^(GITHUB_TOKEN|GITHUB_APP_.*|NOTIFY_SECRET|NOTIFY_URLS|HISTORY_TOKEN|GITHUB_WEBHOOK_SECRET)(_FILE)?$/;

type Env = z.infer<typeof envSchema>;

/** Variable names a stack file on this node references (`${NAME…}` or `$NAME`): its implicit STACK_ENV. */
function referencedVars(file: string): string[] {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return []; // docker stack config names the missing file at the first deploy
  }
  return [...new Set([...text.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1] as string))];
}

/**
 * The values a stack is rendered with: the names in STACK_ENV and the stack's `env:`, or, for a
 * stack file on this node that names none, the variables that file references (its author is the
 * operator). A stack from git gets only what is named: its file is the committer's. Never the
 * watcher's own credentials.
 */
function stackVars(
  env: NodeJS.ProcessEnv,
  v: Env,
  own: readonly string[] | undefined,
  fileOnNode: string | undefined,
): Record<string, string> {
  const named = v.STACK_ENV || own ? [...(v.STACK_ENV ?? []), ...(own ?? [])] : fileOnNode ? referencedVars(fileOnNode) : [];
  const secret = named.find((n) => WATCHER_SECRETS.test(n));
  if (secret && (v.STACK_ENV?.includes(secret) || own?.includes(secret)))
    throw new ConfigError(`STACK_ENV: ${secret} is the watcher's own credential and is never handed to a stack`);
  const out: Record<string, string> = {};
  for (const n of named) if (!WATCHER_SECRETS.test(n) && n !== "IMAGE_TAG" && n !== "DEPLOY_SHA" && env[n]) out[n] = env[n] as string;
  return out;
}

function readStacksFile(file: string, env: NodeJS.ProcessEnv, v: Env): StackConfig[] {
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
  const stacks = parsed.data.stacks.map((s) => {
    if (names.has(s.name)) throw new ConfigError(`AGENT_CONFIG=${file}: stack ${s.name} is listed twice`);
    names.add(s.name);
    if (!s.file === !s.git) throw new ConfigError(`AGENT_CONFIG=${file}: stack ${s.name} needs one of file or git`);
    if (s.git && !s.repository) throw new ConfigError(`AGENT_CONFIG=${file}: stack ${s.name} has a git source: set its repository`);
    const onNode = s.git ? undefined : path.resolve(path.dirname(file), s.file ?? "");
    return {
      name: s.name,
      file: s.git ? s.git.path : (onNode as string),
      git: s.git,
      repository: s.repository ?? v.DEPLOY_REPOSITORY,
      branches: s.branches ?? v.DEPLOY_BRANCHES,
      tags: s.tags ?? v.DEPLOY_TAGS,
      vars: stackVars(env, v, s.env, onNode),
      policy: s.policy ?? ALLOW_ALL,
      healthUrl: s.healthUrl,
      environment: s.environment ?? s.name,
      environmentUrl: s.environmentUrl,
      productionEnvironment: s.productionEnvironment,
      reconcile: s.reconcile,
      selfHeal: s.selfHeal ?? selfHeal(v),
      dependsOn: [...new Set(s.dependsOn ?? [])],
    };
  });
  const problem = dependencyProblem(stacks);
  if (problem) throw new ConfigError(`AGENT_CONFIG=${file}: ${problem}`);
  return stacks;
}

/** A `dependsOn` naming a stack that is not configured, or a cycle (`app → db → app`), or null. */
export function dependencyProblem(stacks: readonly Pick<StackConfig, "name" | "dependsOn">[]): string | null {
  const byName = new Map(stacks.map((s) => [s.name, s]));
  for (const s of stacks)
    for (const d of s.dependsOn) if (!byName.has(d)) return `stack ${s.name}: dependsOn names ${d}, which is not a configured stack`;
  const done = new Set<string>();
  const visit = (name: string, path: string[]): string | null => {
    if (path.includes(name)) return `dependsOn forms a cycle: ${[...path.slice(path.indexOf(name)), name].join(" → ")}`;
    if (done.has(name)) return null;
    for (const d of byName.get(name)?.dependsOn ?? []) {
      const found = visit(d, [...path, name]);
      if (found) return found;
    }
    done.add(name);
    return null;
  };
  for (const s of stacks) {
    const found = visit(s.name, []);
    if (found) return found;
  }
  return null;
}

const selfHeal = (v: Env): boolean => v.SELF_HEAL === "1" || v.SELF_HEAL === "true";

function githubAuth(v: z.infer<typeof envSchema>): GithubAuth | undefined {
  const app = [v.GITHUB_APP_ID, v.GITHUB_APP_PRIVATE_KEY, v.GITHUB_APP_INSTALLATION_ID];
  if (v.GITHUB_TOKEN && app.some((x) => x !== undefined))
    throw new ConfigError("GITHUB_TOKEN and GITHUB_APP_* are both set: use a token or an App, not both");
  if (v.GITHUB_TOKEN) return { type: "token", token: v.GITHUB_TOKEN };
  if (app.every((x) => x === undefined)) return undefined;
  if (!v.GITHUB_APP_ID) throw new ConfigError("GITHUB_APP_ID is required with GITHUB_APP_PRIVATE_KEY_FILE and GITHUB_APP_INSTALLATION_ID");
  if (!v.GITHUB_APP_PRIVATE_KEY) throw new ConfigError("GITHUB_APP_PRIVATE_KEY_FILE is required with GITHUB_APP_ID (the App's .pem file)");
  if (!v.GITHUB_APP_INSTALLATION_ID) throw new ConfigError("GITHUB_APP_INSTALLATION_ID is required with GITHUB_APP_ID");
  return { type: "app", appId: v.GITHUB_APP_ID, privateKey: v.GITHUB_APP_PRIVATE_KEY, installationId: v.GITHUB_APP_INSTALLATION_ID };
}

/** The format a notification URL gets: `slack+https://…` or `discord+https://…` force one; Slack's and Discord's own hosts are known. */
function notifyTarget(raw: string): { format: NotifyFormat; url: string } {
  const forced = /^(slack|discord|json)\+(https?:\/\/.+)$/.exec(raw);
  const url = forced?.[2] ?? raw;
  let host: string;
  try {
    const u = new URL(url);
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("not http(s)");
    host = u.hostname;
  } catch {
    // the URL itself may be a secret (Slack's and Discord's are): never echo it
    throw new ConfigError("NOTIFY_URLS: an entry is not an http(s) URL (entries are comma-separated; the value is not shown)");
  }
  if (forced) return { format: forced[1] as NotifyFormat, url };
  if (host === "hooks.slack.com") return { format: "slack", url };
  if (/(^|\.)discord(app)?\.com$/.test(host) && new URL(url).pathname.startsWith("/api/webhooks/")) return { format: "discord", url };
  return { format: "json", url };
}

function reportsConfig(v: z.infer<typeof envSchema>): ReportsConfig {
  const auth = githubAuth(v);
  return {
    github: auth ? { apiUrl: v.GITHUB_API_URL.replace(/\/+$/, ""), auth } : undefined,
    logUrlTemplate: v.LOG_URL_TEMPLATE,
    notify: { targets: v.NOTIFY_URLS.map(notifyTarget), secret: v.NOTIFY_SECRET, on: v.NOTIFY_ON, repeatMs: v.NOTIFY_REPEAT_S * 1000 },
    outboxMax: v.OUTBOX_MAX,
  };
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
  const v = parseEnv(envSchema, cleanEnv(env, FILE_VARS));
  let stacks: StackConfig[];
  if (v.AGENT_CONFIG) {
    if (v.STACK_FILE || v.STACK_NAME) throw new ConfigError("AGENT_CONFIG and STACK_FILE/STACK_NAME are both set: use one");
    stacks = readStacksFile(v.AGENT_CONFIG, env, v);
  } else {
    if (!v.STACK_FILE) throw new ConfigError("STACK_FILE is required (the stack file to deploy), or AGENT_CONFIG for several stacks");
    if (!v.STACK_NAME) throw new ConfigError("STACK_NAME is required (the Docker stack name, e.g. app)");
    stacks = [
      {
        name: v.STACK_NAME,
        file: path.resolve(v.STACK_FILE),
        git: undefined,
        repository: v.DEPLOY_REPOSITORY,
        branches: v.DEPLOY_BRANCHES,
        tags: v.DEPLOY_TAGS,
        vars: stackVars(env, v, undefined, path.resolve(v.STACK_FILE)),
        policy: ALLOW_ALL,
        healthUrl: v.HEALTH_URL,
        environment: v.DEPLOY_ENVIRONMENT ?? v.STACK_NAME,
        environmentUrl: v.ENVIRONMENT_URL,
        productionEnvironment: v.PRODUCTION_ENVIRONMENT === "true",
        reconcile: true,
        selfHeal: selfHeal(v),
        dependsOn: [],
      },
    ];
  }
  return Object.freeze({
    spoolDir: v.SPOOL_DIR,
    stateDir: path.resolve(v.STATE_DIR),
    keepObjectVersions: v.KEEP_OBJECT_VERSIONS,
    ageKeyFile: v.SOPS_AGE_KEY_FILE ? path.resolve(v.SOPS_AGE_KEY_FILE) : undefined,
    dryRun: v.DRY_RUN === "1" || v.DRY_RUN === "true",
    stacks: Object.freeze(stacks.map((s) => Object.freeze(s))),
    pollIntervalMs: v.POLL_INTERVAL_MS,
    deployTimeoutMs: v.DEPLOY_TIMEOUT_S * 1000,
    retries: v.DEPLOY_RETRIES,
    retryBackoffMs: v.RETRY_BACKOFF_MS,
    healthTimeoutMs: v.HEALTH_TIMEOUT_S * 1000,
    digestPolicy: v.DIGEST_POLICY,
    imageWaitMs: v.IMAGE_WAIT_S * 1000,
    logLevel: v.LOG_LEVEL,
    logFormat: v.LOG_FORMAT,
    metrics: v.METRICS_ADDR ? splitAddr(v.METRICS_ADDR) : undefined,
    onFailure: v.ON_FAILURE,
    historyKeepMs: v.HISTORY_KEEP_DAYS * 24 * 3600 * 1000,
    reconcileIntervalMs: v.RECONCILE_INTERVAL_S * 1000,
    reports: reportsConfig(v),
  });
}
