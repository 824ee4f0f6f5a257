import { loadConfigOrExit } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { packageVersion } from "../lib/version.ts";
import { openSpool } from "../spool/index.ts";
import { createAgent } from "./agent.ts";
import { loadAgentConfig } from "./config.ts";
import { createDockerRunner } from "./docker.ts";
import { createAgentMetrics, serveMetrics } from "./metrics.ts";

const config = loadConfigOrExit("webhook-watcher", () => loadAgentConfig());

const log = createLogger({ service: "webhook-watcher", level: config.logLevel, format: config.logFormat });
const version = packageVersion();
const metrics = createAgentMetrics(version);
const agent = createAgent({ config, spool: openSpool(config.spoolDir), docker: createDockerRunner(), log, metrics, version });
const { github, notify } = config.reports;
log.info(
  { github: github ? `${github.apiUrl} (${github.auth.type})` : "off", notify: notify.targets.map((t) => t.format), notifyOn: notify.on },
  "reports",
);
for (const s of config.stacks) {
  if (s.tags.includes("*"))
    log.warn(
      { stack: s.name },
      "DEPLOY_TAGS deploys any tag: anyone who can push a tag deploys it; name a pattern instead, e.g. DEPLOY_TAGS=v*",
    );
  log.info({ stack: s.name, variables: Object.keys(s.vars) }, "variables handed to the stack (STACK_ENV); nothing else of the watcher's");
}
// off unless METRICS_ADDR is set; a port that cannot be opened stops the watcher at start, named
const served = config.metrics
  ? await serveMetrics(metrics.registry, config.metrics.host, config.metrics.port).catch((err: NodeJS.ErrnoException) => {
      process.stderr.write(
        `webhook-watcher: METRICS_ADDR=${config.metrics?.host}:${config.metrics?.port}: cannot listen (${err.code ?? err.message})\n`,
      );
      process.exit(1);
    })
  : undefined;
if (served) log.info({ url: served.url }, "serving /metrics");

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "stop requested");
  Promise.all([agent.stop(), served?.close()]).then(
    () => process.exit(0),
    (err: Error) => {
      log.error({ err }, "error while stopping");
      process.exit(1);
    },
  );
};
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
await agent.start();
