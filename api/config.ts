import { z } from "zod";
import { logFormatVar, type LogFormat } from "../lib/log.ts";
import { variableRows, type VariableRow } from "../lib/config-table.ts";
import { ConfigError, cleanEnv, listVar, logLevelVar, parseEnv, portVar, secretVar, tagsVar } from "../lib/config.ts";
import { COMMIT_SHA, REPOSITORY } from "../spool/index.ts";

/** GitHub caps webhook payloads at 25 MB; nothing larger can be a real delivery. */
export const MAX_BODY_LIMIT = 25 * 1024 * 1024;
/** All request bodies in flight together: a few of GitHub's largest, well inside a 256 MB replica. */
export const DEFAULT_INFLIGHT_LIMIT = 64 * 1024 * 1024;
/** The shortest webhook secret accepted: 128 bits as hex (openssl rand -hex 32 gives 64 characters). */
export const MIN_SECRET_LENGTH = 32;

const shape = {
  PORT: portVar(8000),
  HOST: z.string().default("0.0.0.0"),
  SPOOL_DIR: z.string({ error: "SPOOL_DIR is required: the spool root, e.g. /mnt/nfs/webhook_jobs" }),
  GITHUB_WEBHOOK_SECRET: secretVar("GITHUB_WEBHOOK_SECRET", MIN_SECRET_LENGTH),
  DEPLOY_REPOSITORY: z.string().regex(REPOSITORY, "DEPLOY_REPOSITORY must be owner/name").optional(),
  DEPLOY_BRANCHES: listVar.transform((l) => (l.length > 0 ? l : ["main"])),
  DEPLOY_EVENTS: listVar
    .transform((l) => (l.length > 0 ? l : ["push"]))
    .pipe(z.array(z.enum(["push", "workflow_run"], { error: "DEPLOY_EVENTS: each must be push or workflow_run" }))),
  DEPLOY_WORKFLOWS: listVar,
  DEPLOY_TAGS: tagsVar,
  WEBHOOK_BODY_LIMIT: z.coerce
    .number()
    .int()
    .min(1024)
    .max(MAX_BODY_LIMIT, `WEBHOOK_BODY_LIMIT must be at most ${MAX_BODY_LIMIT} (GitHub's 25 MB cap)`)
    .default(MAX_BODY_LIMIT),
  WEBHOOK_INFLIGHT_LIMIT: z.coerce.number().int().min(1024).default(DEFAULT_INFLIGHT_LIMIT),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "DATABASE_URL must be a postgres:// URL" }).optional(),
  POSTGRES_HOST: z.string().optional(),
  POSTGRES_PORT: portVar(5432),
  POSTGRES_DB: z.string().default("app"),
  POSTGRES_USER: z.string().default("app"),
  POSTGRES_PASSWORD: secretVar("POSTGRES_PASSWORD", 12).optional(),
  VISIT_SALT: secretVar("VISIT_SALT", 16).optional(),
  TRUSTED_PROXIES: listVar,
  LOG_LEVEL: logLevelVar,
  LOG_FORMAT: logFormatVar,
  GIT_SHA: z.string().regex(COMMIT_SHA, "GIT_SHA must be a 40-hex commit SHA").optional(),
  HISTORY_TOKEN: secretVar("HISTORY_TOKEN", MIN_SECRET_LENGTH).optional(),
};

const FILE_VARS = ["GITHUB_WEBHOOK_SECRET", "POSTGRES_PASSWORD", "VISIT_SALT", "HISTORY_TOKEN"];

/** What each variable means: docs/reference.md's table and `swarmhook config` are made from these and the schema. */
const MEANINGS: Record<keyof typeof shape, string> = {
  PORT: "port the API listens on",
  HOST: "address the API listens on",
  SPOOL_DIR: "the spool root: the NFS mount, the same path on every node (never created by the code)",
  GITHUB_WEBHOOK_SECRET:
    "the webhook secret, at least 32 characters (`openssl rand -hex 32`); in the swarm the Docker secret `github_webhook_secret`",
  DEPLOY_REPOSITORY: "the repository whose pushes deploy (owner/name); unset: any repository holding the secret (warned at start)",
  DEPLOY_BRANCHES: "branches that deploy, comma or space separated",
  DEPLOY_EVENTS: "events that deploy: `push` and/or `workflow_run`",
  DEPLOY_WORKFLOWS: "with `workflow_run`: only these workflow names deploy (none: any successful run)",
  DEPLOY_TAGS: "tag pushes that deploy: `false`, or patterns such as `v*` or `v*,release-*` (`true`: any tag, warned at start)",
  WEBHOOK_BODY_LIMIT: "largest webhook body accepted, in bytes (at most GitHub's 25 MiB cap)",
  WEBHOOK_INFLIGHT_LIMIT:
    "bytes all bodies in flight may hold together, counted as they arrive; beyond it 503 with Retry-After (an eighth is kept for bodies under 256 KiB)",
  DATABASE_URL: "Postgres for `/api/visit`: a postgres:// URL (or POSTGRES_HOST and the four below); unset: no database",
  POSTGRES_HOST: "Postgres host (instead of DATABASE_URL)",
  POSTGRES_PORT: "Postgres port",
  POSTGRES_DB: "Postgres database",
  POSTGRES_USER: "Postgres user",
  POSTGRES_PASSWORD: "Postgres password, required with POSTGRES_HOST; in the swarm the Docker secret `postgres_password`",
  VISIT_SALT: "salt for hashing visitor addresses: stable and random, required with a database",
  TRUSTED_PROXIES: "addresses or CIDRs whose X-Forwarded-For is believed (Traefik on the overlay network)",
  LOG_LEVEL: "pino level: fatal, error, warn, info, debug, trace, silent",
  LOG_FORMAT: "`auto`: readable lines at a terminal, JSON otherwise (journald, `docker service logs`); `pretty` or `json` forces one",
  GIT_SHA: "the commit the image was built from (a build argument), reported by `/health`",
  HISTORY_TOKEN: "token for the deployment history (`/deployments`, `/api/deployments`), at least 32 characters; unset: the history is 404",
};

/** The API's variables, one row each, from the schema: `swarmhook config --program api`. */
export const apiVariableRows = (): VariableRow[] => variableRows("api", shape, MEANINGS, FILE_VARS);

const schema = z.object(shape).superRefine((v, ctx) => {
  if (v.WEBHOOK_INFLIGHT_LIMIT < v.WEBHOOK_BODY_LIMIT) {
    ctx.addIssue({
      code: "custom",
      path: ["WEBHOOK_INFLIGHT_LIMIT"],
      message: "WEBHOOK_INFLIGHT_LIMIT must be at least WEBHOOK_BODY_LIMIT",
    });
  }
  if (v.DATABASE_URL && v.POSTGRES_HOST) {
    ctx.addIssue({ code: "custom", path: ["DATABASE_URL"], message: "set DATABASE_URL or POSTGRES_HOST, not both" });
  }
  if (v.POSTGRES_HOST && !v.POSTGRES_PASSWORD) {
    ctx.addIssue({
      code: "custom",
      path: ["POSTGRES_PASSWORD"],
      message: "POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is required with POSTGRES_HOST",
    });
  }
  if ((v.DATABASE_URL || v.POSTGRES_HOST) && !v.VISIT_SALT) {
    ctx.addIssue({
      code: "custom",
      path: ["VISIT_SALT"],
      message: "VISIT_SALT is required with a database: a stable random string (openssl rand -hex 32)",
    });
  }
});

export interface DatabaseConfig {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string | undefined;
  connectionString: string | undefined;
}

export interface ApiConfig {
  port: number;
  host: string;
  spoolDir: string;
  secret: string;
  deploy: {
    repository: string | undefined;
    branches: readonly string[];
    events: readonly ("push" | "workflow_run")[];
    workflows: readonly string[];
    /** Tag patterns that deploy (DEPLOY_TAGS); `*` is any tag; empty: tag pushes do not deploy. */
    tags: readonly string[];
  };
  bodyLimit: number;
  /** Bytes all request bodies in flight may hold together (beyond: 503 with Retry-After). */
  inflightLimit: number;
  database: DatabaseConfig | undefined;
  visitSalt: string | undefined;
  trustedProxies: readonly string[];
  logLevel: string;
  logFormat: LogFormat;
  gitSha: string | undefined;
  /** The deployment history (/api/deployments, /deployments) answers only to this token; undefined: 404. */
  historyToken: string | undefined;
}

/**
 * Parse the API's configuration once, at start. Throws ConfigError naming the variable.
 * @example
 * const config = loadApiConfig({ SPOOL_DIR: "/mnt/nfs/webhook_jobs", GITHUB_WEBHOOK_SECRET_FILE: "/run/secrets/github_webhook_secret" });
 */
export function loadApiConfig(env: NodeJS.ProcessEnv = process.env): Readonly<ApiConfig> {
  const v = parseEnv(schema, cleanEnv(env, FILE_VARS));
  for (const proxy of v.TRUSTED_PROXIES) {
    if (!/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(proxy)) throw new ConfigError(`TRUSTED_PROXIES: "${proxy}" is not an IP address or CIDR`);
  }
  const database: DatabaseConfig | undefined =
    v.DATABASE_URL || v.POSTGRES_HOST
      ? {
          host: v.POSTGRES_HOST ?? "",
          port: v.POSTGRES_PORT,
          database: v.POSTGRES_DB,
          user: v.POSTGRES_USER,
          password: v.POSTGRES_PASSWORD,
          connectionString: v.DATABASE_URL,
        }
      : undefined;
  return Object.freeze({
    port: v.PORT,
    host: v.HOST,
    spoolDir: v.SPOOL_DIR,
    secret: v.GITHUB_WEBHOOK_SECRET,
    deploy: Object.freeze({
      repository: v.DEPLOY_REPOSITORY,
      branches: Object.freeze(v.DEPLOY_BRANCHES),
      events: Object.freeze(v.DEPLOY_EVENTS),
      workflows: Object.freeze(v.DEPLOY_WORKFLOWS),
      tags: Object.freeze(v.DEPLOY_TAGS),
    }),
    bodyLimit: v.WEBHOOK_BODY_LIMIT,
    inflightLimit: v.WEBHOOK_INFLIGHT_LIMIT,
    database: database && Object.freeze(database),
    visitSalt: v.VISIT_SALT,
    trustedProxies: Object.freeze(v.TRUSTED_PROXIES),
    logLevel: v.LOG_LEVEL,
    logFormat: v.LOG_FORMAT,
    gitSha: v.GIT_SHA,
    historyToken: v.HISTORY_TOKEN,
  });
}
