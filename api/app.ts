import { Hono } from "hono";
import type { Logger } from "pino";
import { SpoolError, type Spool } from "../spool/index.ts";
import type { ApiConfig } from "./config.ts";
import { DatabaseUnavailable, HttpError } from "./errors.ts";
import { createHealthRoute } from "./routes/health.ts";
import { createVisitRoute } from "./routes/visit.ts";
import { createWebhookRoute } from "./routes/webhook.ts";
import type { VisitStore } from "./visits.ts";
import type { ClientAddress } from "./client-address.ts";

export interface AppDeps {
  config: Readonly<ApiConfig>;
  spool: Spool;
  log: Logger;
  visits: VisitStore | undefined;
  clientAddress: ClientAddress;
  version: string;
  now?: () => Date;
}

/**
 * The whole HTTP API as a Hono app; main.ts alone opens the port and the pool.
 * @example
 * const app = createApp({ config, spool, log, visits: undefined, clientAddress, version: "0.1.0" });
 * const res = await app.request("/health");
 */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.route("/", createHealthRoute({ version: deps.version, commit: deps.config.gitSha }));
  app.route("/api/visit", createVisitRoute({ visits: deps.visits, clientAddress: deps.clientAddress }));
  app.route(
    "/api/webhook/github",
    createWebhookRoute({ config: deps.config, spool: deps.spool, log: deps.log, now: deps.now ?? (() => new Date()) }),
  );
  app.notFound((c) => c.json({ error: "not found" }, 404));
  app.onError((err, c) => {
    if (err instanceof HttpError) {
      // the unread rest of an oversized body would poison a kept-alive connection
      if (err.status === 413) c.header("Connection", "close");
      return c.json({ error: err.message }, err.status);
    }
    if (err instanceof SpoolError) {
      deps.log.error({ err, code: err.code }, "spool unavailable");
      return c.json({ error: `spool unavailable: ${err.code}` }, 503);
    }
    if (err instanceof DatabaseUnavailable) {
      deps.log.warn({ err: { message: err.message } }, "database unavailable");
      return c.json({ error: "database unavailable" }, 503);
    }
    deps.log.error({ err }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}
