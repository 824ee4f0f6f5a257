import http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** The watcher's Prometheus metrics (prom-client), in a registry of its own. */
export interface AgentMetrics {
  registry: Registry;
  deployments: Counter<"stack" | "outcome">;
  duration: Histogram<"stack">;
  pending: Gauge;
  lastSuccess: Gauge<"stack">;
  spoolErrors: Counter;
  engineUp: Gauge;
  registryRequests: Counter<"registry" | "outcome">;
  imageWait: Histogram;
  drift: Gauge<"stack">;
  degraded: Gauge<"stack">;
  reconcilePasses: Counter<"outcome">;
}

/**
 * @example
 * const metrics = createAgentMetrics("0.1.0");
 * metrics.deployments.inc({ stack: "app", outcome: "success" });
 */
export function createAgentMetrics(version: string): AgentMetrics {
  const registry = new Registry();
  const registers = [registry];
  const info = new Gauge({ name: "swarmhook_info", help: "The watcher's version (always 1)", labelNames: ["version"], registers });
  info.set({ version }, 1);
  return {
    registry,
    deployments: new Counter({
      name: "swarmhook_deployments_total",
      help: "Finished jobs by stack and outcome (success, failed, rolled_back, blocked, superseded, stale, invalid, planned)",
      labelNames: ["stack", "outcome"],
      registers,
    }),
    duration: new Histogram({
      name: "swarmhook_deployment_duration_seconds",
      help: "From the start of docker stack deploy to the verified outcome",
      labelNames: ["stack"],
      buckets: [5, 10, 20, 30, 60, 120, 300, 600, 1200],
      registers,
    }),
    pending: new Gauge({ name: "swarmhook_jobs_pending", help: "Jobs waiting in new/ or claimed and not yet deployed", registers }),
    lastSuccess: new Gauge({
      name: "swarmhook_last_success_timestamp_seconds",
      help: "When the last verified deploy of the stack finished (Unix time)",
      labelNames: ["stack"],
      registers,
    }),
    spoolErrors: new Counter({
      name: "swarmhook_spool_errors_total",
      help: "Failures of the spool itself (missing, unwritable, I/O)",
      registers,
    }),
    engineUp: new Gauge({
      name: "swarmhook_engine_up",
      help: "1 when the Docker engine answers and this node is a swarm manager; 0 while jobs wait for it",
      registers,
    }),
    registryRequests: new Counter({
      name: "swarmhook_registry_requests_total",
      help: "Requests to image registries before a deploy, by registry host and outcome (HTTP status, timeout, error)",
      labelNames: ["registry", "outcome"],
      registers,
    }),
    imageWait: new Histogram({
      name: "swarmhook_image_wait_seconds",
      help: "How long a job waited for its images to appear in the registry (IMAGE_WAIT_S), for jobs that waited",
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 900, 1800],
      registers,
    }),
    drift: new Gauge({
      name: "swarmhook_drift_services",
      help: "Services of a stack that differ from its last successful deploy (changed, added or removed by hand); 0 in sync",
      labelNames: ["stack"],
      registers,
    }),
    degraded: new Gauge({
      name: "swarmhook_degraded_services",
      help: "Services of a stack running fewer tasks than desired for longer than two reconcile passes; 0 when all run",
      labelNames: ["stack"],
      registers,
    }),
    reconcilePasses: new Counter({
      name: "swarmhook_reconcile_passes_total",
      help: "Reconcile passes over one stack, by outcome: in_sync, deploy (a job queued for a commit no webhook brought), drift, degraded, heal, error",
      labelNames: ["outcome"],
      registers,
    }),
  };
}

/** Serve GET /metrics on host:port (METRICS_ADDR) and nothing else. Resolves once it listens. */
export function serveMetrics(registry: Registry, host: string, port: number): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || req.url !== "/metrics") {
      res.writeHead(404).end("not found\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      () => res.writeHead(500).end("metrics unavailable\n"),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const a = server.address() as AddressInfo;
      resolve({
        url: `http://${host.includes(":") ? `[${host}]` : host}:${a.port}/metrics`,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}
