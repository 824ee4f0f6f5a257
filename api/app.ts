import { Hono, type Context } from "hono";
import type { Logger } from "pino";
import { SpoolError, type Spool } from "../spool/index.ts";
import { createBodyBudget, type BodyBudget } from "./body.ts";
import type { ClientAddress } from "./client-address.ts";
import type { ApiConfig } from "./config.ts";
import { DatabaseUnavailable, HttpError } from "./errors.ts";
import { createApiMetrics, createMetricsRoute } from "./metrics.ts";
import { createRejectLog } from "./reject-log.ts";
import { requireHistoryToken } from "./history.ts";
import { createDeploymentsPage } from "./routes/deployments-page.ts";
import { createDeploymentsRoute } from "./routes/deployments.ts";
import { createHealthRoute } from "./routes/health.ts";
import { createVisitRoute } from "./routes/visit.ts";
import { createWebhookRoute } from "./routes/webhook.ts";
import type { VisitStore } from "./visits.ts";

export interface AppDeps {
  config: Readonly<ApiConfig>;
  spool: Spool;
  log: Logger;
  visits: VisitStore | undefined;
  clientAddress: ClientAddress;
  version: string;
  now?: () => Date;
  /** Shared by every request body in flight; defaults to one of `config.inflightLimit` bytes. */
  budget?: BodyBudget;
}

/**
 * The whole HTTP API as a Hono app; main.ts alone opens the port and the pool. Every error is
 * answered here, once: HttpError with its status, SpoolError 503, DatabaseUnavailable 503, else 500.
 * @example
 * const app = createApp({ config, spool, log, visits: undefined, clientAddress, version: "0.1.0" });
 * const res = await app.request("/health");
 */
export function createApp(deps: AppDeps): Hono {
  const { log } = deps;
  const budget = deps.budget ?? createBodyBudget(deps.config.inflightLimit);
  const metrics = createApiMetrics(budget);
  const rejected = createRejectLog(log);
  const app = new Hono();
  app.use("/api/webhook/github", async (c, next) => {
    const started = performance.now();
    await next();
    metrics.requests.inc({ status: String(c.res.status) });
    metrics.duration.observe((performance.now() - started) / 1000);
  });
  app.route("/", createMetricsRoute(metrics));
  app.route("/", createHealthRoute({ version: deps.version, commit: deps.config.gitSha }));
  app.route("/api/visit", createVisitRoute({ visits: deps.visits, clientAddress: deps.clientAddress }));
  app.route(
    "/api/webhook/github",
    createWebhookRoute({
      config: deps.config,
      spool: deps.spool,
      log,
      budget,
      clientAddress: deps.clientAddress,
      now: deps.now ?? (() => new Date()),
    }),
  );
  const token = deps.config.historyToken;
  if (token) {
    // without HISTORY_TOKEN none of this exists: 404, like any unknown path
    const guard = requireHistoryToken(token, createRejectLog(log, 10_000, Date.now, "history request rejected"));
    for (const p of ["/api/deployments", "/api/deployments/*", "/deployments", "/deployments/*"]) app.use(p, guard);
    app.route("/api/deployments", createDeploymentsRoute({ spool: deps.spool }));
    app.route("/deployments", createDeploymentsPage({ spool: deps.spool }));
  }
  app.notFound((c) => c.json({ error: "not found" }, 404));
  app.onError((err, c) => {
    if (err instanceof HttpError) return answerHttpError(err, c, rejected, log);
    if (err instanceof SpoolError) {
      if (!c.req.path.startsWith("/api/webhook/")) {
        log.error({ err, code: err.code, path: c.req.path }, "history not readable: spool unavailable");
        return c.json({ error: `spool unavailable (${err.code})` }, 503);
      }
      log.error({ err, code: err.code, path: c.req.path }, "job not written: spool unavailable");
      metrics.spoolWriteErrors.inc();
      return c.json({ error: `spool unavailable (${err.code}): the job was not queued, redeliver later` }, 503);
    }
    if (err instanceof DatabaseUnavailable) {
      log.warn({ err }, "database unavailable");
      return c.json({ error: "database unavailable" }, 503);
    }
    log.error({ err }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}

function answerHttpError(err: HttpError, c: Context, rejected: ReturnType<typeof createRejectLog>, log: Logger): Response {
  if (err.clientGone) log.info({ path: c.req.path }, "the client went away mid-request");
  else rejected({ status: err.status, reason: err.logAs, path: c.req.path });
  if (err.retryAfter !== undefined) c.header("Retry-After", String(err.retryAfter));
  return c.json({ error: err.message }, err.status);
}
