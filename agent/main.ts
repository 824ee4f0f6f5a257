import { loadConfigOrExit } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { openSpool } from "../spool/index.ts";
import { createAgent } from "./agent.ts";
import { loadAgentConfig } from "./config.ts";
import { createDockerRunner } from "./docker.ts";

const config = loadConfigOrExit("webhook-watcher", () => loadAgentConfig());

const log = createLogger({ service: "webhook-watcher", level: config.logLevel, format: config.logFormat });
const agent = createAgent({ config, spool: openSpool(config.spoolDir), docker: createDockerRunner(), log });

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "stop requested");
  agent.stop().then(
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
