import type pg from "pg";
import { loadConfigOrExit } from "../lib/config.ts";
import { packageVersion } from "../lib/version.ts";
import { createLogger } from "../lib/log.ts";
import { ensureSpool, openSpool } from "../spool/index.ts";
import { createApp } from "./app.ts";
import { createClientAddress } from "./client-address.ts";
import { loadApiConfig, type ApiConfig } from "./config.ts";
import { startServer } from "./server.ts";
import { createVisitStore, VISIT_DEADLINE_MS } from "./visits.ts";

/** Postgres is loaded only when a database is configured: the driver alone costs about 15 MB of RSS. */
async function createPool(db: NonNullable<ApiConfig["database"]>): Promise<pg.Pool> {
  const { default: pg } = await import("pg");
  const bounds = { connectionTimeoutMillis: 1000, query_timeout: VISIT_DEADLINE_MS - 100, max: 5, idleTimeoutMillis: 10_000 };
  return db.connectionString
    ? new pg.Pool({ connectionString: db.connectionString, ...bounds })
    : new pg.Pool({ host: db.host, port: db.port, database: db.database, user: db.user, password: db.password, ...bounds });
}

async function main(): Promise<void> {
  const config = loadConfigOrExit("swarmhook api", () => loadApiConfig());
  const log = createLogger({ service: "swarmhook-api", level: config.logLevel, format: config.logFormat });
  const spool = openSpool(config.spoolDir, "api");
  await ensureSpool(spool).catch((err: Error) => log.error({ err }, "spool not ready: webhooks will answer 503 until it is"));
  if (!config.deploy.repository) log.warn("DEPLOY_REPOSITORY is not set: any repository that signs with the secret can deploy");
  if (config.deploy.tags.includes("*"))
    log.warn(
      "DEPLOY_TAGS deploys any tag: anyone who can push a tag (named main, say) deploys it; name a pattern instead, e.g. DEPLOY_TAGS=v*",
    );

  const pool = config.database ? await createPool(config.database) : undefined;
  pool?.on("error", (err) => log.warn({ err }, "idle database connection lost"));
  const visits = pool && config.visitSalt ? createVisitStore({ pool, salt: config.visitSalt }) : undefined;
  if (!visits) {
    log.warn(
      "no database configured: /api/visit answers 503; set DATABASE_URL, or POSTGRES_HOST with POSTGRES_PASSWORD(_FILE), and VISIT_SALT",
    );
  } else {
    await visits
      .ensureSchema()
      .catch((err: Error) => log.warn({ err }, "database not reachable at start-up; the schema is created on first use"));
  }

  const app = createApp({
    config,
    spool,
    log,
    visits,
    clientAddress: createClientAddress(config.trustedProxies),
    version: packageVersion(),
  });
  const running = await startServer(app, { port: config.port, host: config.host });
  log.info({ url: running.url, spool: spool.root, branches: config.deploy.branches, events: config.deploy.events }, "listening");

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping: no new connections, draining in-flight requests");
    await running.close();
    await pool?.end();
    log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

await main();
