import { Hono } from "hono";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BodyBudget } from "./body.ts";

/** The API's Prometheus metrics (prom-client), in a registry of its own. */
export interface ApiMetrics {
  registry: Registry;
  requests: Counter<"status">;
  duration: Histogram;
  spoolWriteErrors: Counter;
}

/**
 * @example
 * const metrics = createApiMetrics(budget);
 * app.route("/", createMetricsRoute(metrics));
 */
export function createApiMetrics(budget: BodyBudget): ApiMetrics {
  const registry = new Registry();
  const registers = [registry];
  new Gauge({
    name: "swarmhook_webhook_bytes_in_flight",
    help: "Bytes of webhook bodies held right now (bounded by WEBHOOK_INFLIGHT_LIMIT)",
    registers,
    collect() {
      this.set(budget.held);
    },
  });
  return {
    registry,
    requests: new Counter({
      name: "swarmhook_webhook_requests_total",
      help: "Webhook requests by HTTP status",
      labelNames: ["status"],
      registers,
    }),
    duration: new Histogram({
      name: "swarmhook_webhook_duration_seconds",
      help: "From the request to the answer (a 202 includes the durable write)",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    }),
    spoolWriteErrors: new Counter({
      name: "swarmhook_spool_write_errors_total",
      help: "Jobs not written because the spool failed (answered 503)",
      registers,
    }),
  };
}

/** GET /metrics on the API's own port; Traefik routes only /api and /health, so the internet never sees it. */
export function createMetricsRoute(metrics: ApiMetrics): Hono {
  return new Hono().get("/metrics", async (c) =>
    c.body(await metrics.registry.metrics(), 200, { "content-type": metrics.registry.contentType }),
  );
}
